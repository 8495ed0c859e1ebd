//! Rewrites of the ONNX graph before tract reads it: node patterns of the export
//! (`training/export.py`) that become one nextword op each.
//!
//! * attention, six nodes per layer -> [`NextwordAttention`](super::attention);
//! * rotary embedding, seven nodes per layer -> [`NextwordRope`](super::rope);
//! * the KV cache: the attention reads each layer's cached keys and values in place, and
//!   one [`NextwordKvPresent`](super::kv_present) builds the extended cache (six nodes per
//!   layer and a final concatenation fewer);
//! * RMS normalization with its gain, six nodes per norm -> [`NextwordRmsNorm`](super::rms_norm);
//! * the feed-forward gate, five nodes per layer -> [`NextwordSwiGlu`](super::swiglu);
//! * the split of the q/k/v projection into heads around the rotary embedding, seven nodes
//!   per layer (the rotation's included) -> [`NextwordQkvRope`](super::qkv_rope);
//! * the residual connections, `Add(x, MatMulNBits(..))` with `x` the embedding lookup or
//!   the previous residual `Add`, two per layer -> [`NextwordResidualAdd`](super::residual_add).
//!
//! Each pattern matches only as written below, with every intermediate value used once
//! (so nothing else reads what the fused op no longer computes); anything else is left as
//! it is. The model file is not changed: ONNX Runtime and tract's own ops run the same
//! graph, unfused. Both [`MatMulImpl`](super::MatMulImpl)s get the rewrite, so comparing
//! them still compares their `MatMulNBits` only.

use std::collections::HashMap;

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto};

/// How many patterns of each kind a rewrite replaced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fused {
    pub attention: usize,
    pub rope: usize,
    /// Layers whose cache the attention reads in place (all or none).
    pub kv_cache: usize,
    pub rms_norm: usize,
    pub swiglu: usize,
    /// Layers whose q/k/v split and rotation are one op (their `rope` count stays).
    pub qkv_rope: usize,
    pub residual_add: usize,
}

/// Rewrites `graph` in place.
pub fn fuse(graph: &mut GraphProto) -> Fused {
    // These patterns share no node, so one view of the graph finds them all; the cache
    // plumbing is matched around the fused attention nodes, on a second view.
    let [attention, rope, rms_norm, swiglu, residual_add] = rewrite(
        graph,
        [
            match_attention,
            match_rope,
            match_rms_norm,
            match_swiglu,
            match_residual_add,
        ],
    );
    let kv_cache = fuse_kv_cache(graph);
    // Around the fused rotation.
    let [qkv_rope] = rewrite(graph, [match_qkv_rope]);
    Fused {
        attention,
        rope,
        kv_cache,
        rms_norm,
        swiglu,
        qkv_rope,
        residual_add,
    }
}

/// A match: the nodes it replaces (by index) and the node that replaces them, placed where
/// the last of them was (its inputs are all computed before the first).
struct Match {
    remove: Vec<usize>,
    node: NodeProto,
}

/// What a matcher sees of the graph.
struct View<'a> {
    graph: &'a GraphProto,
    /// The node computing each value.
    producer: HashMap<&'a str, usize>,
    /// How many node inputs and graph outputs read each value.
    uses: HashMap<&'a str, usize>,
    /// The nodes reading each value.
    consumers: HashMap<&'a str, Vec<usize>>,
    initializers: HashMap<&'a str, &'a TensorProto>,
}

impl<'a> View<'a> {
    fn new(graph: &'a GraphProto) -> Self {
        let mut producer = HashMap::new();
        let mut uses: HashMap<&str, usize> = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for out in &node.output {
                producer.insert(out.as_str(), i);
            }
            for input in &node.input {
                *uses.entry(input.as_str()).or_default() += 1;
                consumers.entry(input.as_str()).or_default().push(i);
            }
        }
        for out in &graph.output {
            *uses.entry(out.name.as_str()).or_default() += 1;
        }
        let initializers = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        View {
            graph,
            producer,
            uses,
            consumers,
            initializers,
        }
    }

    /// The node computing `value` if it is a `op_type` node whose only output is `value`,
    /// read once.
    fn sole(&self, value: &str, op_type: &str) -> Option<(usize, &'a NodeProto)> {
        let &i = self.producer.get(value)?;
        let node = &self.graph.node[i];
        let ok = node.op_type == op_type
            && node.domain.is_empty()
            && node.output.len() == 1
            && self.uses.get(value) == Some(&1);
        ok.then_some((i, node))
    }

    /// Node `i` if it is a two-input, one-output `op_type` node of the default domain.
    fn binary(&self, i: usize, op_type: &str) -> Option<&'a NodeProto> {
        let node = &self.graph.node[i];
        let ok = node.op_type == op_type
            && node.domain.is_empty()
            && node.input.len() == 2
            && node.output.len() == 1;
        ok.then_some(node)
    }

    fn initializer(&self, name: &str) -> Option<&'a TensorProto> {
        self.initializers.get(name).copied()
    }

    /// An initializer holding one f32.
    fn scalar_f32(&self, name: &str) -> Option<f32> {
        let t = self.initializer(name)?;
        if t.data_type != DataType::Float as i32 || t.dims.iter().product::<i64>() != 1 {
            return None;
        }
        match (t.float_data.as_slice(), t.raw_data.as_slice()) {
            ([x], _) => Some(*x),
            ([], raw) => Some(f32::from_le_bytes(raw.try_into().ok()?)),
            _ => None,
        }
    }

    /// Whether `node` is `Slice(data, start, end, axis)` with one-element constant bounds.
    fn is_slice(&self, node: &NodeProto, data: &str, start: i64, end: i64, axis: i64) -> bool {
        let bound = |i: usize| node.input.get(i).and_then(|x| self.scalar_i64(x));
        node.op_type == "Slice"
            && node.domain.is_empty()
            && node.input.len() == 4
            && node.input[0] == data
            && bound(1) == Some(start)
            && bound(2) == Some(end)
            && bound(3) == Some(axis)
    }

    /// The values of a one-axis i64 initializer.
    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        let t = self.initializer(name)?;
        if t.data_type != DataType::Int64 as i32 || t.dims.len() != 1 {
            return None;
        }
        if !t.int64_data.is_empty() {
            return Some(t.int64_data.clone());
        }
        let raw = t.raw_data.chunks_exact(8);
        (raw.remainder().is_empty() && raw.len() as i64 == t.dims[0]).then(|| {
            raw.map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect()
        })
    }

    /// An initializer holding one i64.
    fn scalar_i64(&self, name: &str) -> Option<i64> {
        let t = self.initializer(name)?;
        if t.data_type != DataType::Int64 as i32 || t.dims.iter().product::<i64>() != 1 {
            return None;
        }
        match (t.int64_data.as_slice(), t.raw_data.as_slice()) {
            ([x], _) => Some(*x),
            ([], raw) => Some(i64::from_le_bytes(raw.try_into().ok()?)),
            _ => None,
        }
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The other input of a two-input node, given one.
fn other<'a>(node: &'a NodeProto, one: &str) -> Option<&'a str> {
    match node.input.as_slice() {
        [a, b] if a == one => Some(b),
        [a, b] if b == one => Some(a),
        _ => None,
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn float_attr(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

/// Applies each matcher at every node, replacing what it matches; returns the match count of
/// each. The export's patterns share no node; in a graph where two matches would, the later
/// one is left as it is.
fn rewrite<const N: usize>(
    graph: &mut GraphProto,
    matchers: [fn(&View, usize) -> Option<Match>; N],
) -> [usize; N] {
    let mut counts = [0; N];
    let mut claimed = vec![false; graph.node.len()];
    let mut matches = Vec::new();
    let view = View::new(graph);
    for (matcher, count) in matchers.iter().zip(&mut counts) {
        for m in (0..graph.node.len()).filter_map(|i| matcher(&view, i)) {
            if m.remove.iter().all(|&i| !claimed[i]) {
                m.remove.iter().for_each(|&i| claimed[i] = true);
                matches.push(m);
                *count += 1;
            }
        }
    }
    apply(graph, matches);
    counts
}

/// Removes each match's nodes and puts its node where the last of them was.
fn apply(graph: &mut GraphProto, matches: Vec<Match>) {
    let mut replacement: HashMap<usize, NodeProto> = HashMap::new();
    let mut removed = vec![false; graph.node.len()];
    for m in matches {
        let last = *m.remove.iter().max().expect("a match removes nodes");
        for i in m.remove {
            removed[i] = true;
        }
        replacement.insert(last, m.node);
    }
    let nodes = std::mem::take(&mut graph.node);
    graph.node = nodes
        .into_iter()
        .enumerate()
        .filter_map(|(i, node)| replacement.remove(&i).or((!removed[i]).then_some(node)))
        .collect();
}

/// The export's cache plumbing, after [`match_attention`] (see the module doc of
/// [`super::kv_present`]). For each layer `l`, with `past_kv` a graph input:
///
/// ```text
/// kv_all = Concat(Squeeze(Slice(past_kv, l, l+1, 0), 0), Concat(k, v, axis 0), axis 2)
/// NextwordAttention(q, Slice(kv_all, 0, 1, 0), Slice(kv_all, 1, 2, 0), bias)
/// present_kv = Concat(Unsqueeze(kv_all_0, 0), .., Unsqueeze(kv_all_L-1, 0), axis 0)
/// ```
///
/// becomes `NextwordAttention(q, k, v, bias, past_kv; layer l)` and
/// `present_kv = NextwordKvPresent(past_kv, k_0, v_0, ..)`. Every layer must match, or
/// nothing changes. Returns the number of layers.
fn fuse_kv_cache(graph: &mut GraphProto) -> usize {
    let Some((attention, present)) = match_kv_cache(&View::new(graph)) else {
        return 0;
    };
    let layers = attention.len();
    for (i, node) in attention {
        graph.node[i] = node;
    }
    apply(graph, vec![present]);
    layers
}

/// The match of [`fuse_kv_cache`]: rewritten attention nodes by index, and the plumbing's
/// nodes replaced by the `NextwordKvPresent` node (placed where the final concatenation was).
type KvMatch = (Vec<(usize, NodeProto)>, Match);

fn match_kv_cache(view: &View) -> Option<KvMatch> {
    let present_name = view.graph.output.iter().find_map(|out| {
        let &i = view.producer.get(out.name.as_str())?;
        let node = &view.graph.node[i];
        (node.op_type == "Concat" && attr(node, "axis").map(|a| a.i) == Some(0))
            .then_some(&out.name)
    })?;
    let &concat_i = view.producer.get(present_name.as_str())?;
    let concat = &view.graph.node[concat_i];
    let mut remove = vec![concat_i];
    let mut attention = Vec::new();
    let mut present_inputs = Vec::new();
    for (l, layer_present) in concat.input.iter().enumerate() {
        let l = l as i64;
        let (unsqueeze_i, unsqueeze) = view.sole(layer_present, "Unsqueeze")?;
        if unsqueeze.input.len() != 2 || view.scalar_i64(&unsqueeze.input[1]) != Some(0) {
            return None;
        }
        let kv_all = &unsqueeze.input[0];
        let &kv_all_i = view.producer.get(kv_all.as_str())?;
        let kv_concat = &view.graph.node[kv_all_i];
        if kv_concat.op_type != "Concat"
            || attr(kv_concat, "axis").map(|a| a.i) != Some(2)
            || kv_concat.input.len() != 2
            || view.uses.get(kv_all.as_str()) != Some(&3)
        {
            return None;
        }
        let (squeeze_i, squeeze) = view.sole(&kv_concat.input[0], "Squeeze")?;
        if squeeze.input.len() != 2 || view.scalar_i64(&squeeze.input[1]) != Some(0) {
            return None;
        }
        let (past_slice_i, past_slice) = view.sole(&squeeze.input[0], "Slice")?;
        let past = &past_slice.input[0];
        if !view.graph.input.iter().any(|x| &x.name == past)
            || !view.is_slice(past_slice, past, l, l + 1, 0)
        {
            return None;
        }
        let (new_i, new) = view.sole(&kv_concat.input[1], "Concat")?;
        if attr(new, "axis").map(|a| a.i) != Some(0) || new.input.len() != 2 {
            return None;
        }
        // kv_all's other two readers: the key and value slices of one attention node.
        let slices: Vec<usize> = view.consumers[kv_all.as_str()]
            .iter()
            .copied()
            .filter(|&i| i != unsqueeze_i)
            .collect();
        let [a, b] = slices[..] else { return None };
        let (k_slice_i, v_slice_i) = if view.is_slice(&view.graph.node[a], kv_all, 0, 1, 0) {
            (a, b)
        } else {
            (b, a)
        };
        let (k_slice, v_slice) = (&view.graph.node[k_slice_i], &view.graph.node[v_slice_i]);
        if !view.is_slice(k_slice, kv_all, 0, 1, 0) || !view.is_slice(v_slice, kv_all, 1, 2, 0) {
            return None;
        }
        let readers = |node: &NodeProto| view.consumers.get(node.output[0].as_str()).cloned();
        let (k_readers, v_readers) = (readers(k_slice)?, readers(v_slice)?);
        let [attention_i] = k_readers[..] else {
            return None;
        };
        let node = &view.graph.node[attention_i];
        if v_readers != [attention_i]
            || node.op_type != "NextwordAttention"
            || node.input.len() != 4
            || node.input[1] != k_slice.output[0]
            || node.input[2] != v_slice.output[0]
        {
            return None;
        }
        let mut fused = node.clone();
        fused.input[1] = new.input[0].clone();
        fused.input[2] = new.input[1].clone();
        fused.input.push(past.clone());
        fused.attribute.push(int_attr("layer", l));
        attention.push((attention_i, fused));
        present_inputs.extend(new.input.iter().cloned());
        remove.extend([
            unsqueeze_i,
            kv_all_i,
            squeeze_i,
            past_slice_i,
            new_i,
            k_slice_i,
            v_slice_i,
        ]);
    }
    let past = attention.first()?.1.input[4].clone();
    if attention.iter().any(|(_, node)| node.input[4] != past) {
        return None;
    }
    let node = NodeProto {
        name: format!("{present_name}.kv_present"),
        op_type: "NextwordKvPresent".into(),
        input: std::iter::once(past).chain(present_inputs).collect(),
        output: vec![present_name.clone()],
        ..Default::default()
    };
    Some((attention, Match { remove, node }))
}

/// `a = MatMul(Softmax(Add(Mul(MatMul(q, Transpose(k, perm [0,1,3,2])), scale), bias),
/// axis -1), v)`, matched at the last MatMul.
fn match_attention(view: &View, i: usize) -> Option<Match> {
    let out = view.binary(i, "MatMul")?;
    let (softmax_i, softmax) = view.sole(&out.input[0], "Softmax")?;
    let axis = attr(softmax, "axis").map_or(-1, |a| a.i);
    if axis != -1 {
        return None;
    }
    let (add_i, add) = view.sole(&softmax.input[0], "Add")?;
    let (mul_name, bias) = add
        .input
        .iter()
        .find_map(|x| Some((x, other(add, x)?)).filter(|(x, _)| view.sole(x, "Mul").is_some()))?;
    let (mul_i, mul) = view.sole(mul_name, "Mul")?;
    let (scores_name, scale) = mul.input.iter().find_map(|x| {
        let scale = view.scalar_f32(other(mul, x)?)?;
        view.sole(x, "MatMul").map(|_| (x, scale))
    })?;
    let (scores_i, scores) = view.sole(scores_name, "MatMul")?;
    let (transpose_i, transpose) = view.sole(scores.input.get(1)?, "Transpose")?;
    if attr(transpose, "perm").map(|a| a.ints.as_slice()) != Some(&[0, 1, 3, 2]) {
        return None;
    }
    let node = NodeProto {
        name: format!("{}.attention", out.output[0]),
        op_type: "NextwordAttention".into(),
        input: vec![
            scores.input[0].clone(),
            transpose.input[0].clone(),
            out.input[1].clone(),
            bias.to_string(),
        ],
        output: out.output.clone(),
        attribute: vec![float_attr("scale", scale)],
        ..Default::default()
    };
    Some(Match {
        remove: vec![transpose_i, scores_i, mul_i, add_i, softmax_i, i],
        node,
    })
}

/// `Add(Mul(x, cos), Mul(Concat(Neg(Slice(x, h, 2h, -1)), Slice(x, 0, h, -1), axis -1),
/// sin))`, matched at the Add.
fn match_rope(view: &View, i: usize) -> Option<Match> {
    let add = view.binary(i, "Add")?;
    // One input is Mul(rotated, sin), the other Mul(x, cos).
    let (rot_mul_name, cos_mul_name) = [(0, 1), (1, 0)].into_iter().find_map(|(a, b)| {
        let (_, mul) = view.sole(&add.input[a], "Mul")?;
        mul.input
            .iter()
            .any(|x| view.sole(x, "Concat").is_some())
            .then_some((&add.input[a], &add.input[b]))
    })?;
    let (rot_mul_i, rot_mul) = view.sole(rot_mul_name, "Mul")?;
    let (concat_name, sin) = rot_mul.input.iter().find_map(|x| {
        Some((x, other(rot_mul, x)?)).filter(|(x, _)| view.sole(x, "Concat").is_some())
    })?;
    let (concat_i, concat) = view.sole(concat_name, "Concat")?;
    if attr(concat, "axis").map(|a| a.i) != Some(-1) || concat.input.len() != 2 {
        return None;
    }
    let (neg_i, neg) = view.sole(&concat.input[0], "Neg")?;
    let (hi_i, hi) = view.sole(&neg.input[0], "Slice")?;
    let (lo_i, lo) = view.sole(&concat.input[1], "Slice")?;
    let x = &lo.input[0];
    let slice = |node: &NodeProto| -> Option<(i64, i64)> {
        if node.input.len() != 4 || view.scalar_i64(&node.input[3])? != -1 {
            return None;
        }
        Some((
            view.scalar_i64(&node.input[1])?,
            view.scalar_i64(&node.input[2])?,
        ))
    };
    let (lo_range, hi_range) = (slice(lo)?, slice(hi)?);
    let half = lo_range.1;
    if &hi.input[0] != x || lo_range != (0, half) || hi_range != (half, 2 * half) || half <= 0 {
        return None;
    }
    let (cos_mul_i, cos_mul) = view.sole(cos_mul_name, "Mul")?;
    let cos = other(cos_mul, x)?;
    let node = NodeProto {
        name: format!("{}.rope", add.output[0]),
        op_type: "NextwordRope".into(),
        input: vec![x.clone(), cos.to_string(), sin.to_string()],
        output: add.output.clone(),
        attribute: vec![int_attr("half", half)],
        ..Default::default()
    };
    Some(Match {
        remove: vec![lo_i, hi_i, neg_i, concat_i, rot_mul_i, cos_mul_i, i],
        node,
    })
}

/// `Mul(Div(x, Sqrt(Add(ReduceMean(Mul(x, x), axes [-1], keepdims 1), eps))), gain)` with
/// `eps` a scalar and `gain` a one-axis f32 initializer, matched at the last Mul.
fn match_rms_norm(view: &View, i: usize) -> Option<Match> {
    let out = view.binary(i, "Mul")?;
    let (div_name, gain) = out.input.iter().find_map(|x| {
        let gain = other(out, x)?;
        let t = view.initializer(gain)?;
        let is_gain = t.dims.len() == 1 && t.data_type == DataType::Float as i32;
        (is_gain && view.sole(x, "Div").is_some()).then_some((x, gain))
    })?;
    let (div_i, div) = view.sole(div_name, "Div")?;
    let [x, root] = div.input.as_slice() else {
        return None;
    };
    let (sqrt_i, sqrt) = view.sole(root, "Sqrt")?;
    let (add_i, add) = view.sole(sqrt.input.first()?, "Add")?;
    let (mean_name, eps) = add.input.iter().find_map(|m| {
        let eps = view.scalar_f32(other(add, m)?)?;
        view.sole(m, "ReduceMean").map(|_| (m, eps))
    })?;
    let (mean_i, mean) = view.sole(mean_name, "ReduceMean")?;
    if mean.input.len() != 1
        || attr(mean, "axes").map(|a| a.ints.as_slice()) != Some(&[-1])
        || attr(mean, "keepdims").map_or(1, |a| a.i) != 1
    {
        return None;
    }
    let (square_i, square) = view.sole(&mean.input[0], "Mul")?;
    if square.input.as_slice() != [x.clone(), x.clone()] {
        return None;
    }
    let node = NodeProto {
        name: format!("{}.rms_norm", out.output[0]),
        op_type: "NextwordRmsNorm".into(),
        input: vec![x.clone(), gain.to_string()],
        output: out.output.clone(),
        attribute: vec![float_attr("epsilon", eps)],
        ..Default::default()
    };
    Some(Match {
        remove: vec![square_i, mean_i, add_i, sqrt_i, div_i, i],
        node,
    })
}

/// `Mul(Mul(a, Sigmoid(a)), b)` with `a = Slice(x, 0, f, -1)` and `b = Slice(x, f, 2f, -1)`,
/// matched at the last Mul.
fn match_swiglu(view: &View, i: usize) -> Option<Match> {
    let out = view.binary(i, "Mul")?;
    let (silu_name, b) = out
        .input
        .iter()
        .find_map(|x| Some((x, other(out, x)?)).filter(|(x, _)| view.sole(x, "Mul").is_some()))?;
    let (silu_i, silu) = view.sole(silu_name, "Mul")?;
    let (a, sigmoid_name) = silu.input.iter().find_map(|s| {
        Some((other(silu, s)?, s)).filter(|(_, s)| view.sole(s, "Sigmoid").is_some())
    })?;
    let (sigmoid_i, sigmoid) = view.sole(sigmoid_name, "Sigmoid")?;
    // `a` feeds the sigmoid and the product only, `b` the last Mul only.
    if sigmoid.input.as_slice() != [a.to_string()]
        || view.uses.get(a) != Some(&2)
        || view.uses.get(b) != Some(&1)
    {
        return None;
    }
    let (&a_i, &b_i) = (view.producer.get(a)?, view.producer.get(b)?);
    let (a_slice, b_slice) = (&view.graph.node[a_i], &view.graph.node[b_i]);
    let x = a_slice.input.first()?;
    let f = view.scalar_i64(a_slice.input.get(2)?)?;
    if f <= 0
        || a_slice.output.len() != 1
        || b_slice.output.len() != 1
        || !view.is_slice(a_slice, x, 0, f, -1)
        || !view.is_slice(b_slice, x, f, 2 * f, -1)
    {
        return None;
    }
    let node = NodeProto {
        name: format!("{}.swiglu", out.output[0]),
        op_type: "NextwordSwiGlu".into(),
        input: vec![x.clone()],
        output: out.output.clone(),
        attribute: vec![int_attr("half", f)],
        ..Default::default()
    };
    Some(Match {
        remove: vec![a_i, b_i, sigmoid_i, silu_i, i],
        node,
    })
}

/// `Add(x, y)` with `y` a `MatMulNBits` output (or its [`preload`](super::preload)ed
/// form) and `x` the stream the residual connections
/// carry: the embedding lookup (`Gather` / `GatherBlockQuantized`) or the previous residual
/// `Add`. Both are then `[batch, tokens, d_model]`, the shapes the fused op requires.
fn match_residual_add(view: &View, i: usize) -> Option<Match> {
    let add = view.binary(i, "Add")?;
    let op_of = |value: &str| {
        let node = &view.graph.node[*view.producer.get(value)?];
        Some((node.op_type.as_str(), node.domain.as_str()))
    };
    let projection = add.input.iter().find(|y| {
        matches!(
            op_of(y),
            Some(("MatMulNBits", "com.microsoft") | (super::preload::OP_TYPE, ""))
        )
    })?;
    let stream = other(add, projection)?;
    if !matches!(
        op_of(stream)?,
        ("Add" | "Gather", "") | ("GatherBlockQuantized", "com.microsoft")
    ) {
        return None;
    }
    let node = NodeProto {
        name: format!("{}.residual_add", add.output[0]),
        op_type: "NextwordResidualAdd".into(),
        input: vec![stream.to_string(), projection.clone()],
        output: add.output.clone(),
        ..Default::default()
    };
    Some(Match {
        remove: vec![i],
        node,
    })
}

/// Around a fused rotation `r = NextwordRope(Slice(t, 0, 2H, axis 1), cos, sin)`:
/// `t = Transpose(Reshape(qkv, [1, -1, 3H, Dh]), perm [0, 2, 1, 3])`, `q = Slice(r, 0, H, 1)`,
/// `k = Slice(r, H, 2H, 1)`, `v = Slice(t, 2H, 3H, 1)`, matched at the rotation. The fused
/// node has three outputs, so every reader of them must come after the last node it replaces.
fn match_qkv_rope(view: &View, i: usize) -> Option<Match> {
    let rope = &view.graph.node[i];
    if rope.op_type != "NextwordRope" || rope.input.len() != 3 || rope.output.len() != 1 {
        return None;
    }
    let (qk_i, qk) = view.sole(&rope.input[0], "Slice")?;
    let t = qk.input.first()?;
    let &t_i = view.producer.get(t.as_str())?;
    let transpose = &view.graph.node[t_i];
    if transpose.op_type != "Transpose"
        || transpose.output.len() != 1
        || attr(transpose, "perm").map(|a| a.ints.as_slice()) != Some(&[0, 2, 1, 3])
        || view.uses.get(t.as_str()) != Some(&2)
    {
        return None;
    }
    let (reshape_i, reshape) = view.sole(transpose.input.first()?, "Reshape")?;
    let [one, -1, heads3, dh] = view.ints(reshape.input.get(1)?)?[..] else {
        return None;
    };
    let heads = heads3 / 3;
    if one != 1
        || heads <= 0
        || heads3 != 3 * heads
        || dh <= 0
        || attr(rope, "half").map(|a| a.i) != Some(dh / 2)
        || dh % 2 != 0
        || !view.is_slice(qk, t, 0, 2 * heads, 1)
    {
        return None;
    }
    // The rotation's two readers slice the queries and the keys; the transpose's other
    // reader slices the values.
    let r = &rope.output[0];
    let find = |value: &str, start: i64, end: i64| -> Option<usize> {
        view.consumers.get(value)?.iter().copied().find(|&j| {
            let node = &view.graph.node[j];
            node.output.len() == 1 && view.is_slice(node, value, start, end, 1)
        })
    };
    let q_i = find(r, 0, heads)?;
    let k_i = find(r, heads, 2 * heads)?;
    let v_i = find(t, 2 * heads, 3 * heads)?;
    if view.uses.get(r.as_str()) != Some(&2) {
        return None;
    }
    let remove = vec![reshape_i, t_i, qk_i, i, q_i, k_i, v_i];
    let last = *remove.iter().max().expect("not empty");
    let outputs: Vec<String> = [q_i, k_i, v_i]
        .iter()
        .map(|&j| view.graph.node[j].output[0].clone())
        .collect();
    let read_later = outputs.iter().all(|out| {
        view.consumers
            .get(out.as_str())
            .is_none_or(|readers| readers.iter().all(|&j| j > last))
    });
    if !read_later {
        return None;
    }
    let node = NodeProto {
        name: format!("{}.qkv_rope", rope.output[0]),
        op_type: "NextwordQkvRope".into(),
        input: vec![
            reshape.input[0].clone(),
            rope.input[1].clone(),
            rope.input[2].clone(),
        ],
        output: outputs,
        attribute: vec![int_attr("heads", heads), int_attr("head_dim", dh)],
        ..Default::default()
    };
    Some(Match { remove, node })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tract_onnx::prelude::*;

    use super::*;
    use crate::ops::{floats, onnx_framework, MatMulImpl};

    fn decode(bundle: &str) -> (tract_onnx::pb::ModelProto, serde_json::Value) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(bundle);
        let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
        let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        (
            <tract_onnx::pb::ModelProto as prost::Message>::decode(&bytes[..]).unwrap(),
            serde_json::from_str(&manifest).unwrap(),
        )
    }

    /// Runs the LM graph on 5 new tokens after 3 cached ones, with a tree-like mask (the
    /// 4th new token does not see the 3rd), logits after the last two tokens.
    fn run(
        proto: &tract_onnx::pb::ModelProto,
        manifest: &serde_json::Value,
        matmul: MatMulImpl,
    ) -> TVec<TValue> {
        let m = &manifest["model"];
        let dim = |k: &str| m[k].as_u64().unwrap() as usize;
        let (l, h, d) = (dim("n_layers"), dim("n_heads"), dim("head_dim"));
        let (p, s) = (3, 5);
        let ids = tensor2(&[[5i64, 17, 42, 7, 99]]);
        let positions = tensor2(&[[3i64, 4, 5, 6, 6]]);
        let mut bias = vec![0f32; s * (p + s)];
        for i in 0..s {
            for j in p + i + 1..p + s {
                bias[i * (p + s) + j] = -1e9;
            }
        }
        bias[3 * (p + s) + p + 2] = -1e9;
        let bias = Tensor::from_shape(&[s, p + s], &bias).unwrap();
        let past: Vec<f32> = (0..l * 2 * h * p * d)
            .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
            .collect();
        let past = Tensor::from_shape(&[l, 2, h, p, d], &past).unwrap();
        let at = tensor1(&[3i64, 4]);
        let inputs = [ids, positions, bias, past, at];
        let mut model = onnx_framework(matmul).model_for_proto_model(proto).unwrap();
        for (i, t) in inputs.iter().enumerate() {
            model
                .set_input_fact(i, InferenceFact::dt_shape(t.datum_type(), t.shape()))
                .unwrap();
        }
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(inputs.into_iter().map(|t| t.into_tvalue()).collect())
            .unwrap()
    }

    /// Every layer's attention, rotary embedding and cache plumbing is fused, and the fused
    /// graph computes what the export's graph computes, to float rounding (other summation
    /// orders). Run with tract's MatMulNBits, whose activations stay float: with W4A8 a
    /// rounding difference can move an activation to the next int8 level, which on the
    /// bundled model moved logits by up to 0.4% of their range (the same suggestions).
    #[test]
    fn fuses_every_layer_and_keeps_the_outputs() {
        for bundle in ["fixture", "en"] {
            let (proto, manifest) = decode(bundle);
            let layers = manifest["model"]["n_layers"].as_u64().unwrap() as usize;
            let mut fused = proto.clone();
            let before = fused.graph.as_ref().unwrap().node.len();
            let counts = fuse(fused.graph.as_mut().unwrap());
            assert_eq!(
                counts,
                Fused {
                    attention: layers,
                    rope: layers,
                    kv_cache: layers,
                    // Two per layer and the final one.
                    rms_norm: 2 * layers + 1,
                    swiglu: layers,
                    qkv_rope: layers,
                    residual_add: 2 * layers,
                },
                "{bundle}"
            );
            assert_eq!(
                fused.graph.as_ref().unwrap().node.len(),
                before - layers * (5 + 6 + 7) - (2 * layers + 1) * 5 - layers * 4 - layers * 6,
                "{bundle}"
            );
            let want = run(&proto, &manifest, MatMulImpl::TractBuiltin);
            let got = run(&fused, &manifest, MatMulImpl::TractBuiltin);
            for (w, g) in want.iter().zip(&got) {
                assert_eq!(w.shape(), g.shape());
                let (w, g) = (floats(w), floats(g));
                let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
                let worst = w
                    .iter()
                    .zip(&g)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(worst <= 1e-5 * scale, "{bundle}: {worst} vs scale {scale}");
            }
        }
    }

    /// A fused node with a size no model could mean (a tampered file can hold one) is refused
    /// when the graph is read, before any shape arithmetic uses it.
    #[test]
    fn refuses_absurd_fused_sizes() {
        let (mut proto, _) = decode("fixture");
        fuse(proto.graph.as_mut().unwrap());
        let graph = proto.graph.as_mut().unwrap();
        let swiglu = graph
            .node
            .iter_mut()
            .find(|n| n.op_type == "NextwordSwiGlu")
            .unwrap();
        swiglu.attribute[0].i = 1 << 40;
        let err = onnx_framework(MatMulImpl::Nextword)
            .model_for_proto_model(&proto)
            .unwrap_err();
        assert!(format!("{err:?}").contains("half must be in"), "{err:?}");
    }

    /// A graph where an intermediate value is also read elsewhere keeps its nodes.
    #[test]
    fn leaves_a_pattern_whose_values_are_shared() {
        let (proto, _) = decode("fixture");
        let mut graph = proto.graph.unwrap();
        let softmax = graph.node.iter().find(|n| n.op_type == "Softmax").unwrap();
        let extra = softmax.output[0].clone();
        graph.output.push(tract_onnx::pb::ValueInfoProto {
            name: extra,
            ..Default::default()
        });
        let counts = fuse(&mut graph);
        assert_eq!(counts.attention, 1, "the other layer still fuses");
        assert!(graph.node.iter().any(|n| n.op_type == "Softmax"));
    }
}
