import pytest
import subprocess
import sys

from conftest import run_cli

HEAVY = ("torch", "onnxruntime", "MNN", "onnx", "cv2")


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from dhm.app.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for sub in (['data', '--help'], ['info', '--help']):\n"
        "    assert CliRunner().invoke(main, sub).exit_code == 0\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"dhm --help imported: {out.stdout.strip()}"


def test_console_script_help_and_version():
    exe = __import__("shutil").which("dhm") or str(__import__("pathlib").Path(sys.executable).with_name("dhm"))
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "dhm data synth" in out.stdout
    from dhm import __version__

    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


@pytest.mark.slow
def test_known_error_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "nope.pth"
    exe = str(__import__("pathlib").Path(sys.executable).with_name("dhm"))
    out = subprocess.run([exe, "info", str(missing)], capture_output=True, text=True)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("dhm: error:") and "no such checkpoint" in lines[0]
    assert "Traceback" not in out.stderr


def test_synth_refuses_to_overwrite_a_users_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    r = run_cli("data", "synth", tmp_path / "d", "--frames", "10")
    assert r.exit_code != 0
    assert "exists and is not an earlier `dhm data synth` output; pass --force" in r.output
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"
    # an empty folder is used, and synth's own earlier output is replaced without --force
    (tmp_path / "e").mkdir()
    assert run_cli("data", "synth", tmp_path / "e", "--frames", "10").exit_code == 0
    r = run_cli("data", "synth", tmp_path / "e", "--frames", "12")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "e" / "full_body_img").iterdir())) == 12
