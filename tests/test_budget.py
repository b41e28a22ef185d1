"""Students chosen by measured speed: candidates in channel packs, the latency probe and its
cache, the choice under a budget, the presets' front, and MNN's per-op profile."""

import json

import pytest

from conftest import TEACHER_WIDTHS, run_cli

from dhm.bench.probe import ProbeSettings, cache_key, host_machine, probe_latency, write_cache
from dhm.distill.budget import candidates, choose_student, families, markdown, widths_for
from dhm.errors import SpecError
from dhm.metrics import generator_cost
from dhm.spec import GeneratorSpec

TEACHER = GeneratorSpec(widths="mobile")


@pytest.mark.parametrize("pack", [4, 8])
def test_candidates_are_in_packs_and_within_their_mac_share(pack):
    t_macs = generator_cost(TEACHER)[0]
    for ratio in (4.0, 10.0):
        w = widths_for(TEACHER, TEACHER, ratio, pack)
        assert all(v % pack == 0 for v in w), w
        assert generator_cost(TEACHER.with_widths(w))[0] <= t_macs / ratio
    specs = candidates(TEACHER, families(TEACHER, None), (pack,))
    assert len(specs) == len(set(specs))
    assert {(s.arch, s.stem) for s in specs} == {(a, t) for a in ("ultralight", "mobileone") for t in ("full", "s2d")}
    assert all(v % pack == 0 for s in specs for v in s.widths)


def test_families_follow_the_teachers_window():
    both = ("full", "s2d")
    assert families(TEACHER, None) == tuple((a, t) for a in ("ultralight", "mobileone") for t in both)
    old = GeneratorSpec(widths="mobile", revision="2024-10-14")  # 16-frame window: no MobileOne student
    assert families(old, None) == (("ultralight", "full"), ("ultralight", "s2d"))
    assert families(TEACHER, "mobileone", "s2d") == (("mobileone", "s2d"),)


def _fake_cache(tmp_path, specs, ms_of):
    """Timings written to the cache as a probe would (the choice is then pure arithmetic)."""
    settings = ProbeSettings(cache=tmp_path)
    machine = host_machine()
    entries = {cache_key(s, settings, machine): {"p50_ms": ms_of(s), "p90_ms": ms_of(s) * 1.1} for s in specs}
    write_cache(settings.cache_file, entries)
    return settings


def test_the_choice_is_the_largest_candidate_under_the_budget(tmp_path):
    specs = candidates(TEACHER, families(TEACHER, None))
    # latency: a floor plus MACs, MobileOne a little slower per MAC
    ms = lambda s: 3.0 + generator_cost(s)[0] / (1.2e7 if s.arch == "mobileone" else 1.5e7)  # noqa: E731
    settings = _fake_cache(tmp_path, [TEACHER, *specs], ms)
    chosen, record = choose_student(TEACHER, 9.0, settings)
    fits = [s for s in specs if ms(s) <= 9.0]
    assert chosen == max(fits, key=lambda s: generator_cost(s)[0])
    assert record["chosen"]["p50_ms"] <= 9.0 and all(r["source"] == "cache" for r in record["candidates"])
    assert record["teacher"]["speedup"] == 1.0 and record["chosen"]["speedup"] > 1
    text = "\n".join(markdown(record))
    assert "Student by latency budget: 9 ms on mnn fp32, 2 thread(s), host" in text
    assert f"**{chosen.arch}{' s2d' if chosen.folded else ''} {','.join(map(str, chosen.widths))}**" in text
    assert text.count("✓") == len(fits) + 1  # the chosen line's mark, and one per fitting candidate

    with pytest.raises(SpecError, match=r"--budget-ms 2: no student fits; the fastest candidate .* takes 3\.\d+ ms"):
        choose_student(TEACHER, 2.0, settings)


def test_budget_options_are_refused_in_one_line(synth_hubert, tmp_path):
    def refused(*args):
        r = run_cli("distill", "--teacher", tmp_path / "none.pt", "--data", synth_hubert, "-o", tmp_path / "o", *args)
        assert r.exit_code != 0 and "Traceback" not in r.output
        return r.output

    assert "--student auto needs --budget-ms" in refused("--student", "auto")
    assert "--student x4 and --budget-ms both choose the student" in refused("--student", "x4", "--budget-ms", "5")
    assert "--snap-packs rounds a preset's widths" in refused("--student", "4,8,8,8,8", "--snap-packs")
    assert "--budget-device 'usb'" in refused("--budget-ms", "5", "--budget-device", "usb")
    assert not (tmp_path / "o").exists()
    r = run_cli("distill", "--teacher", tmp_path / "t.pt", "--data", synth_hubert, "-o", tmp_path / "o",
                "--budget-ms", "0")  # fmt: skip
    assert r.exit_code == 2 and "--budget-ms" in r.output
    with pytest.raises(SpecError, match="phones run MNN"):
        ProbeSettings(budget_device="adb", budget_engine="onnxruntime").check()


@pytest.mark.slow
def test_probe_times_untrained_candidates_once_then_reads_the_cache(tmp_path):
    settings = ProbeSettings(cache=tmp_path, budget_runs=10)
    specs = [GeneratorSpec(widths=w) for w in ((4, 8, 12, 16, 32), (8, 16, 32, 64, 128))]
    first = probe_latency(specs, settings)
    assert [r["source"] for r in first] == ["measured", "measured"]
    assert 0 < first[0]["p50_ms"] and first[0]["macs"] < first[1]["macs"] and first[0]["gflops"] > 0
    again = probe_latency(specs, settings)
    assert [r["source"] for r in again] == ["cache", "cache"]
    assert [r["p50_ms"] for r in again] == [r["p50_ms"] for r in first]
    entries = json.loads((tmp_path / "latency.json").read_text())["entries"]
    assert len(entries) == 2 and all("|t2|fp32|ultralight|hubert|" in k for k in entries)


@pytest.mark.slow
def test_distill_by_budget_writes_the_choice_into_the_report(teacher, synth_hubert, tmp_path, monkeypatch):
    monkeypatch.setenv("DHM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "s"
    r = run_cli("distill", "--teacher", teacher, "--data", synth_hubert, "-o", out, "--student", "auto",
                "--budget-ms", "1000", "--student-arch", "ultralight", "--student-stem", "s2d", "--budget-runs", "5",
                "--steps", "2",
                "--eval-every", "2", "--eval-frames", "4", "--batch-size", "2", "--quiet")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    b = report["budget"]
    # 1000 ms fits everything: the widest candidate (in packs) is the student
    assert b["chosen"]["macs"] == max(c["macs"] for c in b["candidates"])
    assert report["model"]["spec"]["widths"] == b["chosen"]["widths"] and report["model"]["spec"]["stem"] == "s2d"
    assert {c["stem"] for c in b["candidates"]} == {"s2d"}
    assert all(w % 4 == 0 for w in b["chosen"]["widths"]) and b["chosen"]["macs"] < b["teacher"]["macs"]
    assert "## Student by latency budget: 1000 ms" in (out / "report.md").read_text()

    info = run_cli("info", teacher, "--latency", "--budget-runs", "5")
    assert info.exit_code == 0, info.output
    assert "| teacher | " + ",".join(map(str, TEACHER_WIDTHS)) in info.output and "| x10 /4 |" in info.output
    assert "| x10 /4 s2d |" in info.output


def test_int8_losses_are_read_by_op_type():
    from dhm.bench.profile import int8_losses, markdown as profile_markdown

    def row(rid, variant, ops):
        return {"id": rid, "variant": variant, "macs": 10**8, "threads": 2, "total_ms": sum(ops.values()),
                "conversion_ms": 0.0, "ops": {k: {"ms": v, "ops": 1} for k, v in ops.items()}}  # fmt: skip

    rows = [
        row("s/mnn/fp32", "fp32", {"Convolution": 3.0, "ConvolutionDepthwise": 2.0, "Raster": 0.5}),
        row(
            "s/mnn/int8",
            "int8",
            {
                "Convolution [ DT_INT8 ]": 4.0,
                "ConvolutionDepthwise [ DT_INT8 ]": 5.0,
                "FloatToInt8 [ DT_INT8 ]": 0.6,
                "Raster": 0.4,
            },
        ),  # fmt: skip
    ]
    (loss,) = int8_losses(rows)
    assert loss["fp32"] == "s/mnn/fp32" and loss["extra_ms"] == pytest.approx(4.5)
    assert [k for k, _ in loss["by_op"]] == ["ConvolutionDepthwise", "Convolution", "FloatToInt8", "Raster"]
    text = "\n".join(profile_markdown(rows))
    assert "| ConvolutionDepthwise [ DT_INT8 ] | – | 5.00 (1) |" in text
    assert "`s/mnn/int8` against `s/mnn/fp32`: +4.50 ms per frame; ConvolutionDepthwise +3.00 ms" in text
