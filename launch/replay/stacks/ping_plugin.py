"""`python -m launch.replay.stacks.ping_plugin`: rebuild dogbreed's TorchServe /ping plugin from its source.

`dogbreed/serving/adapters/toolkit/Ping.java` is compiled by the Eclipse compiler (`ecj --release 17`,
Debian's `ecj`, which runs on the JRE that TorchServe needs, so no JDK is needed) against the
`model-server.jar` of the TorchServe stack's own environment (TorchServe 0.12.0, the image's), and packed
as `plugins/dogbreed-ping.jar` beside it: the class, the `META-INF/services` entry that TorchServe's
ServiceLoader reads, the compiler's version, and the source's SHA-256, which the tests compare with
`Ping.java` so that an edit without a rebuild is caught. The jar is committed: model.tar.gz carries it, and
packaging a model needs no compiler. Zip entries have a fixed date and order, and ecj writes the same
class for the same source, so a rebuild with the same ecj gives the same jar, byte for byte.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from pathlib import Path

from dogbreed.atomic import atomic_file
from dogbreed.errors import DogBreedError, exit_on_user_error
from launch.replay.environments import environment, run, site_packages

TOOLKIT = Path(__file__).resolve().parents[3] / "dogbreed" / "serving" / "adapters" / "toolkit"
SOURCE = TOOLKIT / "Ping.java"
JAR = TOOLKIT / "plugins" / "dogbreed-ping.jar"
SERVICE = "META-INF/services/org.pytorch.serve.servingsdk.ModelServerEndpoint"
CLASS = "dogbreed.torchserve.Ping"
SOURCE_HASH = "META-INF/dogbreed/Ping.java.sha256"
COMPILER = "META-INF/dogbreed/compiler"  # `ecj -version`: which ecj built it
DATE = (1980, 1, 1, 0, 0, 0)  # zip's earliest: the same bytes in, the same jar out


def source_hash(source: Path = SOURCE) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()


def recorded_hash(jar: Path = JAR) -> str:
    """The SHA-256 of the source the jar was built from."""
    with zipfile.ZipFile(jar) as archive:
        return archive.read(SOURCE_HASH).decode().strip()


def frontend_jar() -> Path:
    """TorchServe's frontend (`ts/frontend/model-server.jar`) in the TorchServe stack's environment."""
    from launch.replay.stacks import torchserve

    env = environment(torchserve.ENVIRONMENT)
    return Path(site_packages(env / "bin" / "python")) / "ts" / "frontend" / "model-server.jar"


def ecj() -> str:
    """The Eclipse compiler on PATH, or one line saying how to install it."""
    compiler = shutil.which("ecj")
    if compiler is None:
        raise DogBreedError(
            "building the /ping plugin needs the Eclipse compiler (ecj) and Java 17: "
            "sudo apt-get install ecj openjdk-17-jre-headless (or `make java`)"
        )
    return compiler


def build(out: Path = JAR, source: Path = SOURCE, classpath: Path | None = None) -> Path:
    """Compile `source` and write the plugin jar to `out` (atomically); returns `out`."""
    compiler = ecj()
    classpath = classpath or frontend_jar()
    version = run([compiler, "-version"], capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ping-plugin-") as tmp:
        classes = Path(tmp) / "classes"
        result = run(
            [
                compiler,
                "--release",
                "17",
                "-proc:none",
                "-failOnWarning",
                "-cp",
                classpath,
                "-d",
                classes,
                source,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DogBreedError(f"ecj could not compile {source}:\n{(result.stdout + result.stderr).strip()}")
        with atomic_file(out) as staged, zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as jar:
            for path in sorted(classes.rglob("*.class")):
                jar.writestr(zipfile.ZipInfo(path.relative_to(classes).as_posix(), DATE), path.read_bytes())
            jar.writestr(zipfile.ZipInfo(SERVICE, DATE), f"{CLASS}\n")
            jar.writestr(zipfile.ZipInfo(COMPILER, DATE), f"{version}\n")
            jar.writestr(zipfile.ZipInfo(SOURCE_HASH, DATE), f"{source_hash(source)}\n")
    return out


if __name__ == "__main__":
    with exit_on_user_error():
        print(f"wrote {build()}")
