//! The fMP4 writer's output as ffprobe and ffmpeg read it: each bundled clip, split into frames
//! 40 ms apart, written as an init segment and one fragment per frame into a file. Each clip is
//! written twice: as cameras send it, and with the parameter sets taken out of the frames, so
//! the decoder has only the init segment's `avcC`/`hvcC` to start from.

use hive_media::fmp4::{Fragmenter, Track};
use hive_media::frame::{Codec, Frame};
use hive_media::nal::{
    access_units, join_length_prefixed, kind, split_length_prefixed, NalKind, ParameterSets,
};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::Command;

const FRAME_INTERVAL_US: i64 = 40_000;
const START_US: i64 = 1_700_000_000_000_000;

/// What the clip turned into: the file and each frame's keyframe flag.
struct Written {
    file: tempfile::NamedTempFile,
    keyframes: Vec<bool>,
}

/// Whether frames keep their in-band parameter sets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum InBand {
    Keep,
    Strip,
}

fn write_clip(codec: Codec, clip: &str, in_band: InBand) -> Written {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shell/assets").join(clip);
    let stream = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let units = access_units(codec, &stream);
    let first = units.first().expect("the clip has frames");
    assert!(first.keyframe, "the clip starts with a keyframe");
    let track = Track::new(codec, &ParameterSets::of_unit(codec, &first.data)).unwrap();
    let mut file = tempfile::Builder::new().suffix(".mp4").tempfile().unwrap();
    file.write_all(&track.init_segment()).unwrap();
    let mut fragmenter = Fragmenter::new();
    for (n, unit) in units.iter().enumerate() {
        let time_us = START_US + n as i64 * FRAME_INTERVAL_US;
        let data = match in_band {
            InBand::Keep => unit.data.clone(),
            InBand::Strip => {
                let nals = split_length_prefixed(&unit.data).unwrap();
                let sets = [NalKind::Vps, NalKind::Sps, NalKind::Pps];
                join_length_prefixed(nals.into_iter().filter(|n| !sets.contains(&kind(codec, n))))
            }
        };
        let frame = Frame { time_us, keyframe: unit.keyframe, codec, data };
        file.write_all(&fragmenter.fragment(&frame)).unwrap();
    }
    file.flush().unwrap();
    assert_eq!(fragmenter.start_us(), Some(START_US));
    Written { file, keyframes: units.iter().map(|u| u.keyframe).collect() }
}

/// The JSON ffprobe prints with these arguments before the file.
fn ffprobe(file: &Path, args: &[&str]) -> Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-of", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("ffprobe runs (apt-get install ffmpeg)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "ffprobe: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Decodes the whole file with ffmpeg and checks it says nothing at level `error`.
fn assert_decodes_cleanly(file: &Path) {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "ffmpeg: {stderr}");
}

/// Checks the stream's codec and size, that ffprobe counts every frame, and that each packet
/// has the decode time and keyframe flag it was written with.
fn assert_probes_as_written(written: &Written, codec_name: &str) {
    let path = written.file.path();
    let entries = "stream=nb_read_frames,width,height,codec_name";
    let probe = ffprobe(path, &["-count_frames", "-show_entries", entries]);
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], codec_name);
    assert_eq!((&stream["width"], &stream["height"]), (&Value::from(640), &Value::from(360)));
    let frames = written.keyframes.len();
    assert_eq!(stream["nb_read_frames"], frames.to_string(), "{probe}");

    let packets = ffprobe(path, &["-show_entries", "packet=dts,flags"]);
    let packets = packets["packets"].as_array().expect("packets");
    assert_eq!(packets.len(), frames);
    for (n, (packet, &keyframe)) in packets.iter().zip(&written.keyframes).enumerate() {
        let dts_ticks = n as i64 * FRAME_INTERVAL_US * 9 / 100;
        assert_eq!(packet["dts"], dts_ticks, "packet {n}");
        let flags = packet["flags"].as_str().unwrap_or_default();
        assert_eq!(flags.starts_with('K'), keyframe, "packet {n}: {flags}");
    }
}

#[test]
fn the_h264_clip_as_fragments_probes_with_every_frame_and_decodes_cleanly() {
    for in_band in [InBand::Keep, InBand::Strip] {
        let written = write_clip(Codec::H264, "testclip.h264", in_band);
        assert!(written.keyframes.len() > 200, "a 10 s clip at 25 fps");
        assert_probes_as_written(&written, "h264");
        assert_decodes_cleanly(written.file.path());
    }
}

#[test]
fn the_h265_clip_as_fragments_probes_with_every_frame_and_decodes_cleanly() {
    for in_band in [InBand::Keep, InBand::Strip] {
        let written = write_clip(Codec::H265, "testclip.h265", in_band);
        assert!(written.keyframes.len() > 200, "a 10 s clip at 25 fps");
        assert_probes_as_written(&written, "hevc");
        assert_decodes_cleanly(written.file.path());
    }
}
