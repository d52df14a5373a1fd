"""The Go types dockerd decodes a container's ``config.v2.json`` and ``hostconfig.json`` into.

A value of the wrong type in either file makes ``container.FromDisk`` fail, and dockerd goes on
without the container (``daemon.restore``: "failed to load container"); see
:mod:`forensics.formats.gotypes`. The schemas hold only fields whose JSON name and type every
release from 1.10 to 29 shares (``hostconfig.json``: from 1.8), so that a value is judged only
where each of them refuses it:

* ``Cmd``, ``Entrypoint``, ``CapAdd``, ``CapDrop`` were ``strslice.StrSlice`` (1.8 ``Command``,
  ``Entrypoint``, ``CapList``: a string or an array) and became ``[]string`` in later releases:
  what both take is an array of strings or a string.
* ``Dns`` became ``[]netip.Addr``, ``PortBindings``' ``HostIp`` a ``netip.Addr``: judged as the
  strings that every release takes.
* ``ConsoleSize`` went from ``[2]int`` to ``[2]uint``, ``BlkioWeight`` from 1.8's ``int64`` to
  ``uint16``, ``PidsLimit`` and ``OomKillDisable`` became pointers: judged as the wider type.
* Fields that some releases leave out or ignore (``State.RemovalInProgress`` is ``json:"-"``
  since 17.x, ``Health``, ``Healthcheck``, ``Shell``, ``StopTimeout``, ``MacAddress``, ``Init``,
  ``Mounts``, ``NanoCpus`` …) are not judged.

Sources: ``container/container.go``, ``container/state.go``, ``volume/mounts/mounts.go``,
``api/types/container/config.go`` and ``hostconfig.go``, ``daemon/network/settings.go`` of
moby 1.10.0, 20.10.0 and master (2026), and ``runconfig/hostconfig.go`` of 1.8.0.
"""

from __future__ import annotations

from forensics.formats.gotypes import (
    BOOL,
    STRING,
    STRING_OR_STRINGS,
    TIME,
    Int,
    Map,
    Slice,
    Struct,
)

INT = Int(64)
STRINGS = Slice(STRING)

#: ``nat.PortBinding`` / ``network.PortBinding``
PORT_BINDING = Struct("PortBinding", {"HostIp": STRING, "HostPort": STRING})
#: ``nat.PortMap``: port → bindings
PORT_MAP = Map(Slice(PORT_BINDING))
#: ``map[string]struct{}`` (``ExposedPorts``, ``Volumes``): each value an object or null
EMPTY_SET = Map(Struct("struct{}", {}))

STATE = Struct(
    "State",
    {
        "Running": BOOL,
        "Paused": BOOL,
        "Restarting": BOOL,
        "OOMKilled": BOOL,
        "Dead": BOOL,
        "Pid": INT,
        "ExitCode": INT,
        "Error": STRING,
        "StartedAt": TIME,
        "FinishedAt": TIME,
    },
)

RUN_CONFIG = Struct(
    "Config",
    {
        "Hostname": STRING,
        "Domainname": STRING,
        "User": STRING,
        "AttachStdin": BOOL,
        "AttachStdout": BOOL,
        "AttachStderr": BOOL,
        "ExposedPorts": EMPTY_SET,
        "Tty": BOOL,
        "OpenStdin": BOOL,
        "StdinOnce": BOOL,
        "Env": STRINGS,
        "Cmd": STRING_OR_STRINGS,
        "Image": STRING,
        "Volumes": EMPTY_SET,
        "WorkingDir": STRING,
        "Entrypoint": STRING_OR_STRINGS,
        "NetworkDisabled": BOOL,
        "OnBuild": STRINGS,
        "Labels": Map(STRING),
        "StopSignal": STRING,
    },
)

MOUNT_POINT = Struct(
    "MountPoint",
    {
        "Source": STRING,
        "Destination": STRING,
        "RW": BOOL,
        "Name": STRING,
        "Driver": STRING,
        "Relabel": STRING,
        "Propagation": STRING,
    },
)

#: ``config.v2.json``
CONTAINER = Struct(
    "Container",
    {
        "State": STATE,
        "ID": STRING,
        "Created": TIME,
        "Path": STRING,
        "Args": STRINGS,
        "Config": RUN_CONFIG,
        "Image": STRING,
        "NetworkSettings": Struct("Settings", {"Ports": PORT_MAP}),
        "LogPath": STRING,
        "Name": STRING,
        "Driver": STRING,
        "MountLabel": STRING,
        "ProcessLabel": STRING,
        "RestartCount": INT,
        "HasBeenStartedBefore": BOOL,
        "HasBeenManuallyStopped": BOOL,
        "MountPoints": Map(MOUNT_POINT),
        "AppArmorProfile": STRING,
        "HostnamePath": STRING,
        "HostsPath": STRING,
        "ShmPath": STRING,
        "ResolvConfPath": STRING,
    },
)

#: ``hostconfig.json`` (with the fields of the embedded ``Resources``)
HOST_CONFIG = Struct(
    "HostConfig",
    {
        "Binds": STRINGS,
        "ContainerIDFile": STRING,
        "Memory": INT,
        "MemorySwap": INT,
        "CpuShares": INT,
        "CpuPeriod": INT,
        "CpuQuota": INT,
        "CpusetCpus": STRING,
        "CpusetMems": STRING,
        "BlkioWeight": INT,
        "OomKillDisable": BOOL,
        "MemorySwappiness": INT,
        "Privileged": BOOL,
        "PortBindings": PORT_MAP,
        "Links": STRINGS,
        "PublishAllPorts": BOOL,
        "Dns": STRINGS,
        "DnsSearch": STRINGS,
        "ExtraHosts": STRINGS,
        "VolumesFrom": STRINGS,
        "Devices": Slice(
            Struct(
                "DeviceMapping",
                {"PathOnHost": STRING, "PathInContainer": STRING, "CgroupPermissions": STRING},
            )
        ),
        "NetworkMode": STRING,
        "IpcMode": STRING,
        "PidMode": STRING,
        "UTSMode": STRING,
        "CapAdd": STRING_OR_STRINGS,
        "CapDrop": STRING_OR_STRINGS,
        "GroupAdd": STRINGS,
        "RestartPolicy": Struct("RestartPolicy", {"Name": STRING, "MaximumRetryCount": INT}),
        "SecurityOpt": STRINGS,
        "ReadonlyRootfs": BOOL,
        "Ulimits": Slice(Struct("Ulimit", {"Name": STRING, "Hard": INT, "Soft": INT})),
        "LogConfig": Struct("LogConfig", {"Type": STRING, "Config": Map(STRING)}),
        "CgroupParent": STRING,
        "ConsoleSize": Slice(INT),
    },
)
