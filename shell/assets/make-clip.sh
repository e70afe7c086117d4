#!/usr/bin/env bash
# Makes the test camera's bundled clips: 10 s of a moving test pattern with the frame number
# burned in, 25 fps, no B-frames, in an Annex B stream with a keyframe (parameter sets in front
# of it) every second. Run once; the outputs are committed:
#
#   shell/assets/make-clip.sh                                   # all three bundled clips
#   shell/assets/make-clip.sh OUT SECONDS SIZE KBIT [h264|h265]  # one clip
#
# testclip.h264 is the main stream (640x360 H.264 Constrained Baseline), testclip-sub.h264 the
# low-resolution secondary stream (320x180), testclip.h265 the main stream in H.265. Benchmarks
# make bigger clips with other arguments (not committed).
set -euo pipefail

one() {
    local out="$1" seconds="$2" size="$3" kbit="$4" codec="${5:-h264}"
    local encode
    if [ "$codec" = h265 ]; then
        encode=(-c:v libx265 -preset veryfast -tune zerolatency
            -x265-params "keyint=25:min-keyint=25:scenecut=0:bframes=0:repeat-headers=1:log-level=error")
    else
        encode=(-c:v libx264 -profile:v baseline -preset veryfast -tune zerolatency
            -x264-params "keyint=25:min-keyint=25:scenecut=0" -bsf:v dump_extra=freq=keyframe)
    fi
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=${size}:rate=25" -t "$seconds" \
        -vf "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:text='%{n}':x=20:y=20:fontsize=48:fontcolor=white:box=1:boxcolor=black" \
        -pix_fmt yuv420p -b:v "${kbit}k" -maxrate "${kbit}k" -bufsize "${kbit}k" \
        "${encode[@]}" -f "${codec/h265/hevc}" "$out"
}

if [ "$#" -gt 0 ]; then
    one "$@"
else
    dir="$(dirname "$0")"
    one "$dir/testclip.h264" 10 640x360 600 h264
    one "$dir/testclip-sub.h264" 10 320x180 120 h264
    one "$dir/testclip.h265" 10 640x360 400 h265
fi
