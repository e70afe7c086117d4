#!/usr/bin/env bash
# Makes the test camera's bundled clip: 10 s of a moving test pattern with the frame number
# burned in, 640x360 at 25 fps, H.264 Constrained Baseline in an Annex B stream, a keyframe
# (with SPS/PPS in front of it) every second. Run once; the output is committed.
#
#   shell/assets/make-clip.sh [OUT] [SECONDS] [SIZE] [KBIT]
#
# Benchmarks make bigger clips with other arguments (not committed).
set -euo pipefail
out="${1:-$(dirname "$0")/testclip.h264}"
seconds="${2:-10}"
size="${3:-640x360}"
kbit="${4:-600}"
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=${size}:rate=25" -t "$seconds" \
    -vf "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:text='%{n}':x=20:y=20:fontsize=48:fontcolor=white:box=1:boxcolor=black" \
    -c:v libx264 -profile:v baseline -pix_fmt yuv420p -preset veryfast -tune zerolatency \
    -b:v "${kbit}k" -maxrate "${kbit}k" -bufsize "${kbit}k" \
    -x264-params "keyint=25:min-keyint=25:scenecut=0" \
    -bsf:v dump_extra=freq=keyframe -f h264 "$out"
