#!/usr/bin/python3
"""The baseline a user would otherwise write: pyudev's monitor, one redis-py XADD per USB device event.

Used by `make bench-udev-burst` (Benchmarks/scripts/udev-burst.sh) on the same umockdev burst as
`plugboard run --source udev --redis`. It takes the same fields the daemon publishes, from the
uevent's udev properties (what udev mode reads; no sysfs reads), and keeps the stream at the same
approximate length.

    pyudev-to-redis.py --port PORT [--stream KEY]
"""
import argparse
import sys

import pyudev
import redis

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--stream", default="bench:pyudev:events")
a = ap.parse_args()

r = redis.Redis(host="127.0.0.1", port=a.port)
context = pyudev.Context()
monitor = pyudev.Monitor.from_netlink(context)  # the "udev" group, as plugboard's udev mode
monitor.filter_by("usb")
monitor.start()
print("listening", flush=True)
for device in iter(monitor.poll, None):
    if device.device_type != "usb_device":
        continue
    p = device.properties
    r.xadd(a.stream, {
        "action": device.action or "",
        "seqnum": device.sequence_number,
        "busnum": p.get("BUSNUM", ""),
        "devnum": p.get("DEVNUM", ""),
        "vendor_id": p.get("ID_VENDOR_ID", ""),
        "product_id": p.get("ID_MODEL_ID", ""),
        "bcd_device": p.get("ID_REVISION", ""),
        "type": p.get("TYPE", ""),
        "serial": p.get("ID_SERIAL_SHORT", ""),
        "manufacturer": p.get("ID_VENDOR_ENC", ""),
        "product": p.get("ID_MODEL_ENC", ""),
        "interfaces": p.get("ID_USB_INTERFACES", ""),
        "driver": device.driver or "",
        "devnode": device.device_node or "",
        "syspath": device.sys_path,
    }, maxlen=100000, approximate=True)
