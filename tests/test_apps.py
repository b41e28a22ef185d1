"""The apps, compiled as far as the registries' tools reach (`make apps`): the Android app's
Kotlin and Java into a signed, verified APK; the iOS bridge under clang's ARC against an
Apple-style Foundation header; every Swift call of the bridge against the signature Swift
imports for it. What only Xcode, the NDK or a phone can check is listed in each demo's README."""

from __future__ import annotations

import pytest

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IOS = ROOT / "ios_demo"
HEADER = IOS / "DhmDemo/DHMAvatar.h"


@pytest.mark.slow
def test_android_apk_builds_signed_and_verified(tmp_path):
    """build_apk.sh compiles every source, signs, and runs apksigner verify, aapt dump badging
    and dexdump itself (any miss exits non-zero); here: its figures and the file."""
    proc = subprocess.run([ROOT / "android_demo/build_apk.sh", tmp_path], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    apk = tmp_path / "app-debug.apk"
    assert apk.is_file() and "signed" in proc.stdout and "package ai.dhm.demo, minSdk 24, targetSdk 34" in proc.stdout
    classes = int(re.search(r"(\d+) app classes in classes.dex", proc.stdout).group(1))
    assert classes >= 4  # MainActivity, Clip, DhmNative, R and their inner classes


def test_ios_bridge_compiles_under_arc_with_clang():
    """Xcode's compiler and memory model: clang, -fobjc-arc, the bridge and the core's headers
    (GNUstep's gobjc++ runs it in test_native.py, but GCC knows no ARC)."""
    clang = shutil.which("clang++")
    assert clang, "clang is not installed: run `make native-deps`"
    cmd = [clang, "-fsyntax-only", "-fobjc-arc", "-fobjc-runtime=ios-15.0", "-x", "objective-c++", "-std=c++17"]
    cmd += ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-isystem", IOS / "host_test/apple_sdk"]
    cmd += ["-I", ROOT / "avatar_core/include", IOS / "DhmDemo/DHMAvatar.mm"]
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


PREPOSITIONS = ("For", "With", "From", "At", "In", "To", "By", "Of", "On")


def bridge_signatures(header: str) -> dict[str, tuple[list[str], bool]]:
    """Swift name -> (argument labels, throws), as Swift imports DHMAvatar.h's methods: a trailing
    NSError** makes a method throw (and drops the argument) when it returns BOOL or an object,
    or carries swift_error (DHM_THROWS_ON_ERROR); otherwise the error stays an argument."""
    text = re.sub(r"//[^\n]*", "", header)
    body = text[text.index("@interface DHMAvatar") : text.index("@end")]
    signatures = {}
    for decl in re.findall(r"^-\s*\(([^)]*)\)([^;]*);", body, re.M):
        returns, rest = decl[0].strip(), " ".join(decl[1].split())
        pieces = re.findall(r"(\w+):\(([^)]*)\)\w+", rest) or [(rest.split()[0], None)]
        names = [p[0] for p in pieces]
        has_error = pieces[-1][1] is not None and pieces[-1][1].replace(" ", "") == "NSError**"
        throws = has_error and (returns == "BOOL" or "*" in returns or returns == "id" or "DHM_THROWS_ON_ERROR" in rest)
        if throws:
            names = names[:-1] if len(names) > 1 else [names[0]]
            arity = len(pieces) - 1
        else:
            arity = len(pieces) if pieces[0][1] is not None else 0
        base, labels = names[0], ["_"] + names[1:arity]
        if base.startswith("initWith"):  # init(firstArgument:…)
            first = base[len("initWith") :]
            base, labels = "DHMAvatar", [first[0].lower() + first[1:]] + names[1:arity]
        else:  # omit needless words: referenceForFrame: -> reference(forFrame:)
            split = re.match(rf"^([a-z]\w*?)({'|'.join(PREPOSITIONS)})([A-Z]\w*)$", base)
            if split and arity:
                base, labels[0] = split.group(1), split.group(2).lower() + split.group(3)
        signatures[base] = (labels[:arity], throws)
    return signatures


def _labels(args: str) -> list[str]:
    depth, parts, current = 0, [], ""
    for ch in args:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts += [current] if current.strip() else []
    return [m.group(1) if (m := re.match(r"\s*(\w+)\s*:(?!:)", p)) else "_" for p in parts]


def swift_calls(text: str):
    """(name, labels, preceded by try in its statement, line) of every DHMAvatar call."""
    for m in re.finditer(r"(?:\bavatar\.(\w+)|\b(DHMAvatar))\(", text):
        name = m.group(1) or m.group(2)
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        line_start = text.rfind("\n", 0, m.start()) + 1
        statement = text[line_start : m.start()]
        yield (
            name,
            _labels(text[m.end() : i - 1]),
            bool(re.search(r"\btry\b", statement)),
            text.count("\n", 0, m.start()) + 1,
        )


def call_problems(header: str, sources: dict[str, str]) -> list[str]:
    """Each Swift call site's labels and `try` against the signature Swift derives from the header."""
    signatures, problems = bridge_signatures(header), []
    for file, text in sources.items():
        for name, labels, tried, line in swift_calls(text):
            if name not in signatures:
                problems.append(f"{file}:{line}: DHMAvatar has no method Swift calls {name}")
                continue
            want, throws = signatures[name]
            if labels != want:
                problems.append(
                    f"{file}:{line}: {name}({', '.join(labels)}) but Swift imports {name}({', '.join(want)})"
                )
            if tried != throws:
                problems.append(f"{file}:{line}: {name} {'throws: needs try' if throws else 'does not throw: no try'}")
    return problems


def test_every_swift_call_of_the_bridge_matches_what_swift_imports():
    """No Swift compiler here. pushPCM/finishPCM returned NSInteger without swift_error, so Swift
    imported them with an error: argument and `try avatar.pushPCM(pcm)` did not compile."""
    header = HEADER.read_text()
    signatures = bridge_signatures(header)
    assert signatures["pushPCM"] == (["_"], True) and signatures["finishPCM"] == ([], True)
    assert signatures["reference"] == (["forFrame"], False) and signatures["nextReference"] == ([], False)
    assert signatures["DHMAvatar"] == (["manifestPath", "modelPath", "imageCount", "threads", "fp16"], True)
    sources = {f.name: f.read_text() for f in sorted((IOS / "DhmDemo").glob("*.swift"))}
    assert sum(len(list(swift_calls(t))) for t in sources.values()) >= 10
    assert call_problems(header, sources) == []
    # the check goes red on the faults it exists for: the header before the fix, a missing try
    before = header.replace(" DHM_THROWS_ON_ERROR;", ";")
    assert [p.split(": ", 1)[1] for p in call_problems(before, sources)] == [
        "pushPCM(_) but Swift imports pushPCM(_, error)",
        "pushPCM does not throw: no try",
        "finishPCM() but Swift imports finishPCM(_)",
        "finishPCM does not throw: no try",
    ]
    player = sources["AvatarPlayer.swift"].replace("try avatar.renderNext(", "avatar.renderNext(")
    assert [p.split(": ", 1)[1] for p in call_problems(header, {**sources, "AvatarPlayer.swift": player})] == [
        "renderNext throws: needs try"
    ]
