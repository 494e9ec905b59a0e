# nooelint: oelint.var.bbclassextend
# (no BBCLASSEXTEND: a service for the target image, see the layer README)
SUMMARY = "NVR kernel for ARM edge boards"
DESCRIPTION = "heldar-edge records cameras (RTSP through ffmpeg, USB/CSI through V4L2), \
               keeps an SQLite index of its footage, samples frames for perception \
               workers and publishes node status and zone events over one MQTT connection."
# Placeholders like HELDAR_GIT_URI below: the project is not published yet.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://github.com/heldar/heldar-edge"
BUGTRACKER = "https://github.com/heldar/heldar-edge/issues"
SECTION = "multimedia"
LICENSE = "Apache-2.0"
# scripts/yocto-check verifies the checksum.
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# bindgen (build dependency of v4l2-sys-mit, under the v4l crate) loads
# libclang from clang-native (oe-core) while building and parses the target's
# <linux/videodev2.h>.
DEPENDS += "clang-native"

# Not published yet: HELDAR_GIT_URI and SRCREV are placeholders for the
# integrator to override (local.conf, distro config or a .bbappend), e.g.
#   HELDAR_GIT_URI = "git://git.example.com/heldar-edge.git;protocol=ssh;branch=main"
#   SRCREV:pn-heldar-edge = "<commit>"
# or build a local checkout with externalsrc (see the layer README). With the
# placeholder SRCREV and no EXTERNALSRC, do_fetch stops with a message saying so.
HELDAR_GIT_URI ?= "git://github.com/heldar/heldar-edge.git;protocol=https;branch=main"
HELDAR_SRCREV_UNSET = "0000000000000000000000000000000000000000"
# The checkout this recipe sits in (<checkout>/yocto/meta-heldar/recipes-heldar/
# heldar-edge), for EXTERNALSRC:pn-heldar-edge = "${HELDAR_CHECKOUT}".
HELDAR_CHECKOUT = "${@os.path.normpath(os.path.join(d.getVar('THISDIR'), '../../../..'))}"

SRC_URI = "${HELDAR_GIT_URI}"
# Every registry crate of Cargo.lock; regenerate with scripts/yocto-crates
# or `bitbake -c update_crates heldar-edge`.
require ${BPN}-crates.inc

SRCREV ?= "${HELDAR_SRCREV_UNSET}"

inherit cargo cargo-update-recipe-crates systemd useradd

# mosquitto (meta-networking) and rclone (no recipe in oe-core or
# meta-openembedded) are recommendations only: the broker may run elsewhere,
# rclone is needed for sftp/s3 backups only. A recommended package must have
# a provider in the build, so each one is an option; mosquitto is on by
# default when meta-networking is in the build.
PACKAGECONFIG ??= "${@bb.utils.contains('BBFILE_COLLECTIONS', 'networking-layer', 'mosquitto', '', d)}"
PACKAGECONFIG[mosquitto] = ",,,,mosquitto"
PACKAGECONFIG[rclone] = ",,,,rclone"

export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${RECIPE_SYSROOT}"

# Cargo.toml's release profile strips the binary: leave that to do_package
# (the -dbg package; already-stripped is an error in ERROR_QA).
export CARGO_PROFILE_RELEASE_STRIP = "false"

python heldar_check_source() {
    if not d.getVar("EXTERNALSRC") and d.getVar("SRCREV") == d.getVar("HELDAR_SRCREV_UNSET"):
        bb.fatal("heldar-edge has no source: set HELDAR_GIT_URI and SRCREV:pn-heldar-edge, or build "
                 "a checkout with externalsrc (EXTERNALSRC:pn-heldar-edge); see meta-heldar/README.md")
}
heldar_check_source[doc] = "Stops do_fetch while neither SRCREV nor EXTERNALSRC names a source"
do_fetch[prefuncs] += "heldar_check_source"

do_install:append() {
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${S}/packaging/systemd/heldar-edge.service ${D}${systemd_system_unitdir}/
    fi

    install -d ${D}${sysconfdir}/heldar
    install -m 0644 ${S}/packaging/config.toml ${D}${sysconfdir}/heldar/config.toml

    install -d ${D}${datadir}/heldar/board
    install -m 0644 ${S}/board/*.toml ${D}${datadir}/heldar/board/

    install -d ${D}${mandir}/man1
    install -m 0644 ${S}/packaging/heldar-edge.1 ${D}${mandir}/man1/
    install -d ${D}${docdir}/${BPN}
    install -m 0644 ${S}/docs/config.md ${S}/docs/mqtt.md ${D}${docdir}/${BPN}/
    # Example systemd drop-ins (the RK3588 encoder's device nodes).
    install -d ${D}${docdir}/${BPN}/examples
    install -m 0644 ${S}/packaging/systemd/rk3588-devices.conf ${D}${docdir}/${BPN}/examples/

    install -d -m 0750 -o heldar -g heldar ${D}${localstatedir}/lib/heldar
}

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system heldar"
USERADD_PARAM:${PN} = "--system --gid heldar --groups video \
                       --home-dir ${localstatedir}/lib/heldar --no-create-home \
                       --shell ${base_sbindir}/nologin heldar"

SYSTEMD_SERVICE:${PN} = "heldar-edge.service"

FILES:${PN} += "${datadir}/heldar"
CONFFILES:${PN} = "${sysconfdir}/heldar/config.toml"

RDEPENDS:${PN} += "ffmpeg"
# Trust anchors for mqtts:// (rustls-native-certs reads the system store).
RRECOMMENDS:${PN} += "ca-certificates"

CVE_PRODUCT = "heldar-edge"
