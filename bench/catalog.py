"""Names, versions and clocks the synthetic host is drawn from (shapes of real hosts)."""

from __future__ import annotations

NS = 1_000_000_000
#: 2025-06-01T12:00:00Z, the moment the host was imaged
NOW_NS = 1_748_779_200 * NS
DAY_NS = 86_400 * NS
MAX_DEPTH = 15

BASES: list[tuple[str, list[str], str]] = [
    ("debian", ["12", "bookworm", "12-slim", "11"], "bash"),
    ("alpine", ["3.20", "3.19", "3.18"], "/bin/sh"),
    ("ubuntu", ["24.04", "22.04", "noble", "jammy"], "/bin/bash"),
    ("busybox", ["1.36", "1.37", "stable"], "sh"),
    ("rockylinux", ["9", "9.3", "8"], "/bin/bash"),
    ("amazonlinux", ["2023", "2"], "/bin/bash"),
    ("fedora", ["40", "41"], "/bin/bash"),
    ("opensuse/leap", ["15.6", "15.5"], "/bin/bash"),
    ("archlinux", ["base", "latest"], "/usr/bin/bash"),
    ("oraclelinux", ["9-slim", "8-slim"], "/bin/bash"),
    ("gcr.io/distroless/static", ["nonroot", "latest"], ""),
    ("clearlinux", ["latest", "base"], "/bin/bash"),
]
RUNTIMES: list[tuple[str, str, list[str], str]] = [
    # name, version tag root, command, exposed port ("" for none)
    ("python", "3.12", ["python3"], ""),
    ("node", "20", ["node"], ""),
    ("golang", "1.22", ["bash"], ""),
    ("eclipse-temurin", "21-jre", ["jshell"], ""),
    ("ruby", "3.3", ["irb"], ""),
    ("php", "8.3-fpm", ["php-fpm"], "9000/tcp"),
    ("nginx", "1.27", ["nginx", "-g", "daemon off;"], "80/tcp"),
    ("redis", "7.2", ["redis-server"], "6379/tcp"),
    ("postgres", "16", ["postgres"], "5432/tcp"),
    ("mysql", "8.4", ["mysqld"], "3306/tcp"),
    ("mongo", "7.0", ["mongod"], "27017/tcp"),
    ("rabbitmq", "3.13", ["rabbitmq-server"], "5672/tcp"),
    ("httpd", "2.4", ["httpd-foreground"], "80/tcp"),
    ("memcached", "1.6", ["memcached"], "11211/tcp"),
    ("traefik", "3.1", ["traefik"], "80/tcp"),
    ("grafana/grafana", "11.1.0", ["grafana"], "3000/tcp"),
    ("prom/prometheus", "v2.53.0", ["--config.file=/etc/prometheus/prometheus.yml"], "9090/tcp"),
]
#: images whose Dockerfile declares a VOLUME, so every container gets an anonymous volume
DATA_RUNTIMES = {
    "postgres": "/var/lib/postgresql/data",
    "mysql": "/var/lib/mysql",
    "mongo": "/data/db",
    "redis": "/data",
    "rabbitmq": "/var/lib/rabbitmq",
}
TEAMS = ["payments", "search", "platform", "data", "web", "mobile", "infra", "ml", "auth", "ops"]
SERVICES = [
    "api",
    "worker",
    "frontend",
    "gateway",
    "scheduler",
    "indexer",
    "billing",
    "notifier",
    "exporter",
    "ingest",
    "reports",
    "cache-warmer",
    "auth",
    "admin",
    "cron",
    "webhooks",
]
LAYER_FILES: dict[str, list[tuple[str, str, str]]] = {
    "base": [("etc", "os-release", "issue"), ("bin", "busybox", "sh"), ("lib", "libc.so", "ld.so")],
    "runtime": [
        ("opt", "runtime.so", "VERSION"),
        ("usr", "entrypoint.sh", "README"),
        ("var", "install.log", "checksums"),
    ],
    "app": [
        ("app", "main.py", "requirements.txt"),
        ("srv", "server.js", "package.json"),
        ("app", "config.yaml", "VERSION"),
        ("www", "index.html", "app.css"),
    ],
}
ADJECTIVES = [
    "admiring",
    "bold",
    "brave",
    "clever",
    "dazzling",
    "eager",
    "festive",
    "gifted",
    "happy",
    "jolly",
    "keen",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "quirky",
    "serene",
    "stoic",
    "tender",
    "vibrant",
    "wizardly",
    "zealous",
    "affectionate",
    "busy",
    "compassionate",
]
SURNAMES = [
    "turing",
    "hopper",
    "lovelace",
    "knuth",
    "ritchie",
    "thompson",
    "torvalds",
    "curie",
    "noether",
    "babbage",
    "shannon",
    "dijkstra",
    "hamilton",
    "liskov",
    "pike",
    "kare",
    "wozniak",
    "goldberg",
    "bell",
    "euler",
    "gauss",
    "hodgkin",
    "lamport",
    "mccarthy",
    "wing",
]


def rfc3339nano(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction trimmed."""
    secs, frac = divmod(ns, NS)
    days, rem = divmod(secs, 86_400)
    hh, rem = divmod(rem, 3600)
    mm, ss = divmod(rem, 60)
    y, m, d = _civil_from_days(days)
    text = f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}"
    fraction = f"{frac:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else text + "Z"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Howard Hinnant's days-to-date algorithm (proleptic Gregorian)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return era * 400 + yoe + (1 if m <= 2 else 0), m, d


ZERO_TIME = "0001-01-01T00:00:00Z"
