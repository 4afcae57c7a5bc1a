"""The JDK the local services run on (Spark, Kafka) and the Ivy cache their jars are resolved into."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from lib.core.errors import SetupError

SUPPORTED_JAVA = (17, 21)


def java_executable() -> str:
    """The java that Spark will launch: $JAVA_HOME/bin/java, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if not candidate.exists():
            raise SetupError(f"JAVA_HOME={java_home} has no bin/java: point it at a JDK 17 or 21")
        return str(candidate)
    found = shutil.which("java")
    if not found:
        raise SetupError(
            "Java not found: install a JDK 17 (apt-get install openjdk-17-jdk-headless, or use environment.yml) or set JAVA_HOME"
        )
    return found


def check_java() -> int:
    """Return the Java major version, or raise SetupError saying what to install."""
    return _check_java(java_executable())


@functools.cache  # two `java` launches: once per process and java
def _check_java(java: str) -> int:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"{java} does not run ({exc}): install a JDK 17 or 21") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise SetupError(f"cannot tell the version of {java}: install a JDK 17 or 21")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major not in SUPPORTED_JAVA:
        raise SetupError(f"{java} is Java {major}; Spark needs Java 17 or 21 (install openjdk-17-jdk-headless or set JAVA_HOME)")
    try:
        modules = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        modules = ""
    if "jdk.incubator.vector" not in modules:
        raise SetupError(
            f"{java} is a trimmed Java runtime without jdk.incubator.vector: install a full JDK 17 or 21 and set JAVA_HOME"
        )
    return major


def ivy_dir() -> Path:
    """Spark's Ivy home, where resolved packages are cached (default ~/.ivy2.5.2)."""
    return Path(os.environ.get("LAKEHOUSE_IVY_DIR", Path.home() / ".ivy2.5.2"))
