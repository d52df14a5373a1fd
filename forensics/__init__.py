"""docker-forensics: offline inventory, verification, export and repair of Docker's storage."""

__version__ = "0.1.0"
