"""Packages are found, never listed: each stage folder is importable as dhm.<stage>, and every
package under it (a folder with __init__.py) goes into the wheel without anyone naming it."""

from setuptools import find_packages, setup

# The one hand-written table: the package each top-level folder is installed as.
FOLDERS = {
    "dhm": "dhm",
    "dhm.distill": "distill",
    "dhm.quantize": "quantize",
    "dhm.export": "export",
    "dhm.runtime_py": "runtime_py",
    "dhm.bench": "bench",
}


def found_packages() -> list[str]:
    packages = []
    for package, folder in FOLDERS.items():
        packages += [package] + [f"{package}.{sub}" for sub in find_packages(folder)]
    return packages


setup(package_dir=FOLDERS, packages=found_packages())
