//! MLLP framing: any byte stream, cut into chunks at points chosen by the input, decodes to
//! the same frames as the whole stream at once; and any decoded frame re-framed decodes back.
#![no_main]

use hl7v2::mllp::{Decoder, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let whole = {
        let mut decoder = Decoder::with_max_frame_len(4096);
        let mut frames = decoder.decode(stream);
        frames.push(decoder.finish().map(|()| Vec::new()));
        frames
    };
    let chunked = {
        let mut decoder = Decoder::with_max_frame_len(4096);
        let step = usize::from(cut).max(1);
        let mut frames = Vec::new();
        for chunk in stream.chunks(step) {
            frames.extend(decoder.decode(chunk));
        }
        frames.push(decoder.finish().map(|()| Vec::new()));
        frames
    };
    let ok = |frames: &[hl7v2::Result<Vec<u8>>]| -> Vec<Vec<u8>> {
        frames.iter().filter_map(|f| f.as_ref().ok().cloned()).collect()
    };
    assert_eq!(ok(&whole), ok(&chunked), "chunking changed the decoded frames");
    for message in ok(&whole).into_iter().filter(|m| !m.is_empty()) {
        let framed = frame(&message).expect("a decoded frame can be framed");
        let mut decoder = Decoder::with_max_frame_len(4096);
        let back = decoder.decode(&framed);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref().ok(), Some(&message), "re-framed message decodes differently");
    }
});
