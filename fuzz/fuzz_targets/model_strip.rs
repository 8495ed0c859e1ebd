//! The model-file walk that keeps the large initializer payloads out of the decoder
//! (`ops::payloads::strip`) on arbitrary bytes: nothing may panic, and where it reads the
//! bytes and prost decodes them, decoding its output and restoring the payloads must give
//! prost's own result (a 16-byte threshold, so that the fuzzer's small tensors are stripped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextword_core::ops::payloads::strip;
use nextword_core::tract_onnx::pb::ModelProto;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(mut stripped) = strip(data, 16) else {
        return;
    };
    let Ok(want) = ModelProto::decode(data) else {
        return;
    };
    let mut got = ModelProto::decode(stripped.bytes.as_slice())
        .expect("the stripped file decodes when the file does");
    if let Some(graph) = got.graph.as_mut() {
        stripped.payloads.restore(data, graph);
    }
    assert_eq!(got, want);
});
