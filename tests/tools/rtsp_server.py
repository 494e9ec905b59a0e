#!/usr/bin/python3
"""A test RTSP camera: GStreamer's RTSP server on 127.0.0.1.

  /usr/bin/python3 tests/tools/rtsp_server.py PORT [--size 320x240] [--fps 15] [--gop N] [--bitrate KBPS] [--password P]

Serves live H.264 test pictures on rtsp://127.0.0.1:PORT/cam, and the same
behind basic auth (user `viewer`, password `--password`, default `secret`) on
rtsp://127.0.0.1:PORT+1/secure. Also on PORT: `/cam265` (H.265),
`/cam-audio` and `/cam265-audio` (with AAC audio), `/cam-resize` (H.264
whose picture doubles in width and height, and back, every `--resize-s`
seconds), and with `--file` that MP4 on `/file`. A key frame every `--gop` frames (default: one a second). Prints
`ready` on stdout once it listens. Runs until killed.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def server_on(port: int) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    return server


SHARED = True


def factory(launch: str, roles: list) -> GstRtspServer.RTSPMediaFactory:
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch(launch)
    # Shared media trips an assertion in gst-rtsp-server when many clients join at once.
    f.set_shared(SHARED)
    if not roles:
        return f
    permissions = GstRtspServer.RTSPPermissions()
    for role in roles:
        permissions.add_role(role)
        permissions.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    f.set_permissions(permissions)
    return f


def resize(media: GstRtspServer.RTSPMedia, width: str, height: str, every_s: int) -> None:
    """Flips the picture of `media` between `width`x`height` and twice that every `every_s` s."""
    size = media.get_element().get_by_name("size")
    sizes = [(int(width), int(height)), (2 * int(width), 2 * int(height))]
    state = {"at": 0}

    def flip() -> bool:
        if media.get_status() == GstRtspServer.RTSPMediaStatus.UNPREPARED:
            return False
        state["at"] ^= 1
        w, h = sizes[state["at"]]
        size.set_property("caps", Gst.Caps.from_string(f"video/x-raw,width={w},height={h}"))
        return True

    GLib.timeout_add_seconds(every_s, flip)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--gop", type=int, help="frames between key frames (default: the fps)")
    parser.add_argument("--resize-s", type=int, default=6)
    parser.add_argument("--bitrate", type=int, default=2048, help="kbit/s of the H.264 streams")
    parser.add_argument("--file", help="an MP4 of H.264 served on /file, from its start for each client")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--unshared", action="store_true", help="one encoder per client (many clients)")
    args = parser.parse_args()
    global SHARED
    SHARED = not args.unshared
    width, height = args.size.split("x")

    Gst.init(None)
    gop = args.gop or args.fps
    picture = f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={args.fps}/1"
    h264 = (
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={args.bitrate} "
        "! rtph264pay name=pay0 pt=96 config-interval=1"
    )
    h265 = (
        f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
        "! rtph265pay name=pay0 pt=96 config-interval=1"
    )
    aac = "audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=16000,channels=1 ! voaacenc ! rtpmp4gpay name=pay1 pt=97"
    launch = f"( {picture} ! {h264} )"
    # The scaler's caps flip between the size and twice it (see `resize`).
    resizing = (
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,framerate={args.fps}/1 ! videoscale "
        f"! capsfilter name=size caps=video/x-raw,width={width},height={height} ! {h264} )"
    )
    mounts = {
        "/cam": factory(launch, []),
        "/cam265": factory(f"( {picture} ! {h265} )", []),
        "/cam-audio": factory(f"( {picture} ! {h264} {aac} )", []),
        "/cam265-audio": factory(f"( {picture} ! {h265} {aac} )", []),
        "/cam-resize": factory(resizing, []),
    }
    if args.file:
        # Pre-encoded: many clients cost the server no encoding (benchmarks).
        mounts["/file"] = factory(f"( filesrc location={args.file} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )", [])
        mounts["/file"].set_shared(False)
    mounts["/cam-resize"].set_shared(False)
    mounts["/cam-resize"].connect("media-configure", lambda _f, media: resize(media, width, height, args.resize_s))
    # Two servers: an auth-enabled server answers anonymous clients 404, not the 401 that
    # makes them send credentials, so the password-protected camera gets its own port.
    open_server = server_on(args.port)
    for path, f in mounts.items():
        open_server.get_mount_points().add_factory(path, f)

    secure_server = server_on(args.port + 1)
    auth = GstRtspServer.RTSPAuth()
    viewer = GstRtspServer.RTSPToken()
    viewer.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic("viewer", args.password), viewer)
    secure_server.set_auth(auth)
    secure_server.get_mount_points().add_factory("/secure", factory(launch, ["viewer"]))

    for server in (open_server, secure_server):
        if server.attach(None) == 0:
            print("cannot listen", file=sys.stderr)
            sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
