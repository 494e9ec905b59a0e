#!/usr/bin/python3
"""A test RTSP camera: GStreamer's RTSP server on 127.0.0.1.

  /usr/bin/python3 tests/tools/rtsp_server.py PORT [--size 320x240] [--fps 15] [--password P]

Serves live H.264 test pictures on rtsp://127.0.0.1:PORT/cam, and the same
behind basic auth (user `viewer`, password `--password`, default `secret`) on
rtsp://127.0.0.1:PORT+1/secure. Prints
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--password", default="secret")
    parser.add_argument("--unshared", action="store_true", help="one encoder per client (many clients)")
    args = parser.parse_args()
    global SHARED
    SHARED = not args.unshared
    width, height = args.size.split("x")

    Gst.init(None)
    launch = (
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={args.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    # Two servers: an auth-enabled server answers anonymous clients 404, not the 401 that
    # makes them send credentials, so the password-protected camera gets its own port.
    open_server = server_on(args.port)
    open_server.get_mount_points().add_factory("/cam", factory(launch, []))

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
