#!/usr/bin/env python3
"""An RTSP relay made of Debian's GStreamer RTSP server, the yardstick for our own relay.

    gst_relay.py --port P --mount NAME=URL [--mount NAME=URL ...] [--mounts-file F]

serves rtsp://127.0.0.1:P/NAME for each mount (F holds one `NAME URL` a line). Like our relay,
all clients of one mount share one upstream pull: one shared media factory per mount running
`rtspsrc ! rtph264depay ! h264parse ! rtph264pay` (H.264 re-packetized, never decoded), sent
to clients as RTP over TCP interleaved. It prints `ready` once serving, and exits 0 on SIGTERM
or SIGINT. RTP timestamps and sequence numbers are GStreamer's own, not the camera's.

Needs (Debian): python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad (h264parse).
"""
import argparse
import os
import signal
import sys
import urllib.parse

SYSTEM_PYTHON = "/usr/bin/python3"

try:
    import gi
except ImportError:
    # `python3` may be a pyenv or venv interpreter that cannot see Debian's python3-gi: run
    # again under the system one (once: the variable stops a loop).
    if os.path.exists(SYSTEM_PYTHON) and not os.environ.get("GST_RELAY_REEXEC"):
        os.environ["GST_RELAY_REEXEC"] = "1"
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, *sys.argv])
    sys.exit("gst_relay: python3-gi is missing (apt-get install python3-gi)")

# Elements the pipelines use, ours and gst-rtsp-server's own.
NEEDED = ["rtspsrc", "rtph264depay", "h264parse", "rtph264pay", "rtpbin", "appsrc", "appsink",
          "queue", "tee"]


def parse_args():
    p = argparse.ArgumentParser(description="GStreamer RTSP relay for benchmarks")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--mount", action="append", default=[], metavar="NAME=URL")
    p.add_argument("--mounts-file", metavar="F", help="one `NAME URL` a line; # comments")
    a = p.parse_args()
    mounts = []
    for m in a.mount:
        name, sep, url = m.partition("=")
        if not sep:
            p.error(f"--mount {m!r}: expected NAME=URL")
        mounts.append((name, url))
    if a.mounts_file:
        try:
            with open(a.mounts_file) as f:
                lines = f.read().splitlines()
        except OSError as e:
            p.error(f"--mounts-file: {e}")
        for n, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                fields = line.split()
                if len(fields) != 2:
                    p.error(f"{a.mounts_file}:{n}: expected `NAME URL`")
                mounts.append(tuple(fields))
    if not mounts:
        p.error("no mounts: give --mount NAME=URL or --mounts-file F")
    for name, url in mounts:
        if not name.strip("/") or not url.startswith(("rtsp://", "rtsps://")):
            p.error(f"bad mount {name!r} -> {url!r}")
    if len({n.strip("/") for n, _ in mounts}) != len(mounts):
        p.error("a mount name is given twice")
    return a, mounts


def split_credentials(url):
    """(URL without user:pass@, user, password): rtspsrc gets them as user-id/user-pw, which
    it answers Basic or Digest challenges with (percent-escapes decoded here)."""
    u = urllib.parse.urlsplit(url)
    if u.username is None:
        return url, None, None
    host = u.netloc.rpartition("@")[2]
    bare = urllib.parse.urlunsplit((u.scheme, host, u.path, u.query, u.fragment))
    unquote = urllib.parse.unquote
    return bare, unquote(u.username), unquote(u.password or "")


def configure(_factory, media, user, password):
    """Each new media (pipeline) of a mount, before it starts."""
    if user is not None:
        # Credentials as properties, not in the launch line, so any character works.
        src = media.get_element().get_by_name("src")
        src.set_property("user-id", user)
        src.set_property("user-pw", password)
    # gst-rtsp-server's RTP sink (an appsink it adds at the first SETUP) waits for each
    # buffer's time on the clock, as a file source needs; a relay forwards on arrival, and
    # waiting would add the camera's start-up burst (a GOP, ~1 s) to every frame's latency.
    media.get_element().get_parent().connect("deep-element-added", unsync_sinks)


def unsync_sinks(_pipeline, _bin, element):
    if element.get_factory().get_name() == "appsink":
        # The server sets sync=true after adding the sink: undo it whenever it is set.
        element.connect("notify::sync", lambda e, _: e.get_property("sync") and
                        e.set_property("sync", False))
        element.set_property("sync", False)


def main():
    args, mounts = parse_args()
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
    except (ValueError, ImportError) as e:
        sys.exit(f"gst_relay: {e} (apt-get install gir1.2-gst-rtsp-server-1.0)")
    Gst.init(None)
    missing = [e for e in NEEDED if Gst.ElementFactory.find(e) is None]
    if missing:
        sys.exit(f"gst_relay: missing GStreamer elements {missing} (apt-get install "
                 "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)")

    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    # Many cameras' clients may connect at once: the default backlog of 5 would drop SYNs.
    server.set_backlog(1024)
    # Client connections are served by a pool of threads (default: 1 for all of them).
    server.get_thread_pool().set_max_threads(os.cpu_count() or 2)
    points = server.get_mount_points()

    for name, url in mounts:
        location, user, password = split_credentials(url)
        quoted = location.replace("\\", "\\\\").replace('"', '\\"')
        # latency=0: no jitter-buffer delay (TCP: nothing to reorder). buffer-mode=none: buffer
        # times from RTP timestamps alone, so the frame spacing is kept exactly (the default
        # skew correction bends it for a while after a camera's start-up burst). depay+pay is
        # the cheapest chain gst-rtsp-server takes (it needs a payloader named pay0).
        # rtph264depay takes SPS/PPS out of the stream (into caps); h264parse puts them back
        # before each keyframe, once per access unit, as the camera sent them (rtph264pay's
        # own config-interval=-1 puts a copy before every IDR *slice*, which makes decoders
        # split a multi-slice keyframe in two). h264parse only reads NAL headers: cheap.
        launch = (f'( rtspsrc name=src location="{quoted}" protocols=tcp latency=0 '
                  "buffer-mode=none ! rtph264depay ! h264parse config-interval=-1 "
                  "! rtph264pay name=pay0 pt=96 )")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)  # one media (one upstream pull) for all clients of the mount
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)  # clients: interleaved TCP only
        factory.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)  # never pause upstream
        factory.connect("media-configure", configure, user, password)
        points.add_factory("/" + name.strip("/"), factory)

    if server.attach(None) == 0:
        sys.exit(f"gst_relay: cannot listen on {args.address}:{args.port}")

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    print("ready", flush=True)  # the only line on stdout: the caller may stop reading it
    loop.run()


if __name__ == "__main__":
    main()
