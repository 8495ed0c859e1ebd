//! Large initializer payloads left in the model file's buffer instead of copied by the decoder.
//!
//! prost copies every `bytes` field of tract's ONNX types into a `Vec` of its own: for the
//! bundled model 7.9 MB of weights were copied out of the 8 MB file buffer, into memory the
//! process had not touched yet, which costs a page fault and a zeroed page per 4 KB (the
//! decode took ~7 ms of a ~48 ms load on the development VM, mostly that). [`strip`]
//! re-encodes the file without the `raw_data` of the graph's large initializers, noting where
//! each lies in the file, so the decoder copies only the rest. `ops::preload` then repacks the
//! `MatMulNBits` weights where they lie, in the file's buffer, which becomes their home, and
//! [`Payloads::restore`] gives every initializer still in the graph its bytes back.
//!
//! The walk reads three levels of the protobuf with prost's own wire-format functions:
//! `ModelProto.graph` (field 7), `GraphProto.initializer` (field 5, repeated) and
//! `TensorProto.raw_data` (field 9); every other field is copied as it is. What prost would
//! decode from the result plus the restored payloads is what it decodes from the file
//! (tested), including its rules for repeated and duplicated fields.

use std::ops::Range;

use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use tract_onnx::pb::GraphProto;

/// `raw_data` payloads from this size on stay in the file's buffer (the model's large ones
/// are weights and their scales, 12.8 KB and up; its constants are a few hundred bytes).
pub const MIN_PAYLOAD: usize = 4096;

const GRAPH: u32 = 7;
const INITIALIZER: u32 = 5;
const RAW_DATA: u32 = 9;

/// Why [`strip`] could not read a model file (prost's message, where prost found it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(String);

impl From<prost::DecodeError> for Malformed {
    fn from(e: prost::DecodeError) -> Malformed {
        Malformed(e.to_string())
    }
}

/// A model file re-encoded without its large initializer payloads.
#[derive(Debug)]
pub struct Stripped {
    /// The protobuf to decode.
    pub bytes: Vec<u8>,
    pub payloads: Payloads,
}

/// Where the stripped payloads lie in the file: per initializer of the decoded graph, in
/// order, the range of its `raw_data` (`None`: decoded as usual).
#[derive(Debug, Default)]
pub struct Payloads {
    ranges: Vec<Option<Range<usize>>>,
}

impl Payloads {
    /// The file range of initializer `index`'s `raw_data`, if it was stripped.
    pub fn range(&self, index: usize) -> Option<Range<usize>> {
        self.ranges.get(index).cloned().flatten()
    }

    /// Forgets initializer `index`'s payload (its bytes were taken from the file).
    pub fn take(&mut self, index: usize) -> Option<Range<usize>> {
        self.ranges.get_mut(index).and_then(Option::take)
    }

    /// Copies each stripped payload from `file` into its initializer. `graph` must be the
    /// decoded graph, its initializers in decode order (before any is removed).
    pub fn restore(&mut self, file: &[u8], graph: &mut GraphProto) {
        for (init, range) in graph.initializer.iter_mut().zip(&mut self.ranges) {
            if let Some(range) = range.take() {
                init.raw_data = file[range].to_vec();
            }
        }
    }
}

/// `file` (an ONNX `ModelProto`) without the `raw_data` of the graph's initializers of at
/// least `min_payload` bytes. Errors on a malformed protobuf, as prost would.
pub fn strip(file: &[u8], min_payload: usize) -> Result<Stripped, Malformed> {
    let mut payloads = Payloads::default();
    let mut bytes = Vec::with_capacity(file.len() / 8);
    each_field(file, 0..file.len(), |field, wire, whole, content| {
        match (field, wire) {
            (GRAPH, WireType::LengthDelimited) => {
                let mut graph = Vec::new();
                each_field(file, content, |field, wire, whole, content| {
                    match (field, wire) {
                        (INITIALIZER, WireType::LengthDelimited) => {
                            let (tensor, payload) = strip_tensor(file, content, min_payload)?;
                            payloads.ranges.push(payload);
                            put_message(&mut graph, INITIALIZER, &tensor);
                        }
                        _ => graph.extend_from_slice(&file[whole]),
                    }
                    Ok(())
                })?;
                put_message(&mut bytes, GRAPH, &graph);
            }
            _ => bytes.extend_from_slice(&file[whole]),
        }
        Ok(())
    })?;
    Ok(Stripped { bytes, payloads })
}

/// A `TensorProto` (`file[range]`) without its `raw_data` if that is at least `min_payload`
/// bytes, and that payload's range. A repeated `raw_data` field replaces the earlier one (as
/// prost reads it): only the last counts.
fn strip_tensor(
    file: &[u8],
    range: Range<usize>,
    min_payload: usize,
) -> Result<(Vec<u8>, Option<Range<usize>>), Malformed> {
    let mut tensor = Vec::with_capacity(256);
    let mut payload = None;
    each_field(file, range, |field, wire, whole, content| {
        match (field, wire) {
            (RAW_DATA, WireType::LengthDelimited) if content.len() >= min_payload => {
                payload = Some(content);
            }
            (RAW_DATA, _) => {
                payload = None;
                tensor.extend_from_slice(&file[whole]);
            }
            _ => tensor.extend_from_slice(&file[whole]),
        }
        Ok(())
    })?;
    Ok((tensor, payload))
}

/// Calls `f(field, wire type, whole field range, content range)` for each field of the
/// message `file[range]`; the content range is the payload of a length-delimited field
/// (empty for the other wire types).
fn each_field(
    file: &[u8],
    range: Range<usize>,
    mut f: impl FnMut(u32, WireType, Range<usize>, Range<usize>) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    let end = range.end;
    let mut buf = &file[range];
    let pos = |buf: &[u8]| end - buf.remaining();
    while buf.has_remaining() {
        let start = pos(buf);
        let (field, wire) = decode_key(&mut buf)?;
        let skip = match wire {
            WireType::Varint => {
                decode_varint(&mut buf)?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => usize::try_from(decode_varint(&mut buf)?)
                .map_err(|_| Malformed("length out of range".into()))?,
            WireType::StartGroup | WireType::EndGroup => {
                return Err(Malformed("groups are not used by ONNX".into()));
            }
        };
        if skip > buf.remaining() {
            return Err(Malformed("buffer underflow".into()));
        }
        let content = pos(buf)..pos(buf) + skip;
        buf.advance(skip);
        let content = if wire == WireType::LengthDelimited {
            content
        } else {
            content.end..content.end
        };
        f(field, wire, start..pos(buf), content)?;
    }
    Ok(())
}

fn put_message(out: &mut Vec<u8>, field: u32, message: &[u8]) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(message.len() as u64, out);
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tract_onnx::pb::{ModelProto, TensorProto};

    fn tensor(name: &str, raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: vec![raw.len() as i64],
            data_type: 2,
            raw_data: raw,
            ..Default::default()
        }
    }

    fn model(inits: Vec<TensorProto>) -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "test".into(),
            graph: Some(GraphProto {
                name: "g".into(),
                initializer: inits,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Decoding the stripped bytes and restoring gives what decoding the file gives.
    fn round_trip(file: &[u8], min: usize) -> (ModelProto, usize) {
        let mut stripped = strip(file, min).unwrap();
        let mut decoded = ModelProto::decode(stripped.bytes.as_slice()).unwrap();
        let kept = stripped.bytes.len();
        if let Some(graph) = decoded.graph.as_mut() {
            stripped.payloads.restore(file, graph);
        }
        (decoded, kept)
    }

    #[test]
    fn large_payloads_are_left_out_and_restored() {
        let m = model(vec![
            tensor("small", vec![1, 2, 3]),
            tensor("large", (0..10_000u32).map(|i| i as u8).collect()),
            tensor("empty", vec![]),
            tensor("large2", vec![7; 5000]),
        ]);
        let file = m.encode_to_vec();
        let (back, kept) = round_trip(&file, MIN_PAYLOAD);
        assert_eq!(back, m);
        assert!(kept < 500, "{kept} bytes left to decode");
        let stripped = strip(&file, MIN_PAYLOAD).unwrap();
        let r = stripped.payloads.range(1).unwrap();
        assert_eq!(
            &file[r],
            m.graph.as_ref().unwrap().initializer[1].raw_data.as_slice()
        );
        assert_eq!(stripped.payloads.range(0), None);
    }

    #[test]
    fn repeated_fields_decode_as_prost_reads_them() {
        let big = tensor("a", vec![9; 6000]);
        let small = tensor("a", vec![1, 2]);
        // A tensor with raw_data twice (the last wins), both orders; two graph fields
        // (prost merges them: initializers appended).
        let mut twice = big.encode_to_vec();
        twice.extend(small.encode_to_vec());
        let mut twice_rev = small.encode_to_vec();
        twice_rev.extend(big.encode_to_vec());
        for tensor_bytes in [twice, twice_rev] {
            let mut graph = Vec::new();
            put_message(&mut graph, INITIALIZER, &tensor_bytes);
            let mut file = Vec::new();
            put_message(&mut file, GRAPH, &graph);
            put_message(&mut file, GRAPH, &graph);
            let want = ModelProto::decode(file.as_slice()).unwrap();
            assert_eq!(want.graph.as_ref().unwrap().initializer.len(), 2);
            assert_eq!(round_trip(&file, MIN_PAYLOAD).0, want);
        }
    }

    #[test]
    fn the_bundled_model_round_trips() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for bundle in ["models/en", "models/fixture"] {
            let file = std::fs::read(root.join(bundle).join("model.onnx")).unwrap();
            let want = ModelProto::decode(file.as_slice()).unwrap();
            let (back, kept) = round_trip(&file, MIN_PAYLOAD);
            assert_eq!(back, want, "{bundle}");
            assert!(
                kept < file.len() / 2,
                "{bundle}: {kept} of {} bytes kept",
                file.len()
            );
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let file = model(vec![tensor("large", vec![5; 8000])]).encode_to_vec();
        // Cuts inside a field (the first two bytes are a whole one: ir_version).
        for cut in [1, 5, 12, 20, file.len() / 2, file.len() - 1] {
            assert!(strip(&file[..cut], MIN_PAYLOAD).is_err(), "cut at {cut}");
        }
        assert!(strip(&[0x0b], MIN_PAYLOAD).is_err(), "a group");
        assert!(strip(
            &[0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            1
        )
        .is_err());
        assert!(strip(&[], MIN_PAYLOAD).unwrap().bytes.is_empty());
    }
}
