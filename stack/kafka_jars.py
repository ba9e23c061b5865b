"""The Kafka jars, downloaded once per version from Maven Central into the shared cache.

``cache_dir/kafka-<version>/libs`` holds every runtime jar of ``kafka_2.13`` (``stack/pom.xml``);
the brokers run from it with ``java -cp``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from stack.config import StackConfig, StackError
from stack.process import require_executable, run_command

DOWNLOAD_TIMEOUT_SECONDS = 900.0
_PACKAGE_DIR = Path(__file__).resolve().parent
_MVN_HINT = "install Maven, e.g. `apt-get install -y maven`"

Log = Callable[[str], None]


def classpath(config: StackConfig) -> str:
    return f"{config.kafka_libs_dir}/*"


def ensure_jars(config: StackConfig, log: Log) -> Path:
    """The libs directory for ``config.kafka_version``, downloading it with Maven the first time.

    Maven fills a private temporary directory that is renamed into place, so a half-finished
    download is never mistaken for a complete one and two concurrent first runs do not clash.
    """
    libs = config.kafka_libs_dir
    if _jars_complete(config, libs):
        return libs
    mvn = require_executable("mvn", _MVN_HINT)
    log(f"downloading Kafka {config.kafka_version} jars with Maven into {libs} (once)")
    version_dir = libs.parent
    version_dir.mkdir(parents=True, exist_ok=True)
    pom = version_dir / "pom.xml"
    shutil.copyfile(_PACKAGE_DIR / "pom.xml", pom)
    staging = version_dir / f"libs.partial-{uuid.uuid4().hex[:8]}"
    try:
        _copy_dependencies(mvn, pom, staging, config.kafka_version)
        _move_into_place(staging, libs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _jars_complete(config, libs):
        raise StackError(f"Maven finished but {libs} has no kafka_2.13 jar; delete it and retry")
    return libs


def _jars_complete(config: StackConfig, libs: Path) -> bool:
    return (libs / f"kafka_2.13-{config.kafka_version}.jar").is_file()


def _copy_dependencies(mvn: str, pom: Path, output: Path, version: str) -> None:
    run_command(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={output}",
            "-DincludeScope=runtime",
        ],
        action=f"downloading Kafka {version} from Maven Central",
        hint=(
            "check the network and that this Kafka version exists on Maven Central "
            "(https://repo1.maven.org/maven2/org/apache/kafka/kafka_2.13/)"
        ),
        timeout=DOWNLOAD_TIMEOUT_SECONDS,
    )


def _move_into_place(staging: Path, libs: Path) -> None:
    try:
        staging.rename(libs)
    except OSError:
        if not libs.is_dir():  # someone else won the race if libs now exists; otherwise re-raise
            raise
