"""Every path, version, port and timeout of the local stack, in one screen."""

from pathlib import Path

LOCAL_DIR = Path(__file__).resolve().parent.parent  # deploy/local
REPO_ROOT = LOCAL_DIR.parent.parent
KAFKA_POM = LOCAL_DIR / "kafka" / "pom.xml"
KAFKA_LOG4J = LOCAL_DIR / "kafka" / "log4j2.properties"
DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "local"

FERRETDB_VERSION = "1.24.2"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_PACKAGE = FERRETDB_MODULE + "/cmd/ferretdb"
MIN_JAVA = 17
MIN_GO = (1, 24)  # FerretDB 1.24's go.mod says "go 1.24"

DEFAULT_KAFKA_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_MONGO_PORT = 27017
HOST = "127.0.0.1"

KAFKA_READY_TIMEOUT = 60.0
FERRETDB_READY_TIMEOUT = 30.0
SERVICE_READY_TIMEOUT = 120.0
SERVICE_STOP_TIMEOUT = 15.0
KAFKA_STOP_TIMEOUT = 30.0
FERRETDB_STOP_TIMEOUT = 10.0

KAFKA_JVM_OPTS = [
    "-Xmx1G",
    "-Xms512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
]

INSTALL_HINTS = {
    "java": f"install a Java {MIN_JAVA}+ runtime (Debian: apt-get install openjdk-17-jre-headless)",
    "mvn": "install Maven (Debian: apt-get install maven)",
    "go": f"install Go {MIN_GO[0]}.{MIN_GO[1]} or newer (Debian: apt-get install golang-go, "
    "from backports if the release's Go is older)",
}
