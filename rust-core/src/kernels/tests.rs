use super::*;
use proptest::prelude::*;

/// Small deterministic PRNG (xorshift64*), so data generation is independent of proptest.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
    /// Uniform in [lo, hi).
    fn f32s(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len)
            .map(|_| lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32))
            .collect()
    }
}

/// Random MatMulNBits initializers for an `[n, k]` matrix.
fn random_nbits(
    rng: &mut Rng,
    n: usize,
    k: usize,
    with_zp: bool,
) -> (Vec<u8>, Vec<f32>, Option<Vec<u8>>) {
    let nb = k / BLOCK;
    let b = rng.bytes(n * nb * 16);
    // Mostly positive scales (as exported) with some negative ones.
    let scales = rng.f32s(n * nb, -0.01, 0.05);
    let zp = with_zp.then(|| rng.bytes(n * nb.div_ceil(2)));
    (b, scales, zp)
}

fn random_matrix(rng: &mut Rng, n: usize, k: usize, with_zp: bool) -> Q4Matrix {
    let (b, s, zp) = random_nbits(rng, n, k, with_zp);
    Q4Matrix::from_matmul_nbits(n, k, &b, &s, zp.as_deref()).unwrap()
}

/// `w` in every layout (MatMulNBits' own first).
fn in_layouts(w: &Q4Matrix) -> [Q4Matrix; 2] {
    [
        w.clone().into_layout(Layout::RowBlocks),
        w.clone().into_layout(Layout::Cols8),
    ]
}

fn scalar() -> &'static dyn Q4Kernel {
    by_name("scalar").unwrap()
}

fn run(kernel: &dyn Q4Kernel, x: &[f32], m: usize, w: &Q4Matrix) -> Vec<f32> {
    let mut out = vec![f32::NAN; m * w.n()];
    kernel.matmul(x, m, w, &mut out);
    out
}

/// `sum_k x[r,k] * w[n,k]` in f64, plus `sum_k |x[r,k] * w[n,k]|`.
fn float_ref(x: &[f32], m: usize, w: &Q4Matrix) -> (Vec<f64>, Vec<f64>) {
    let (n, k) = (w.n(), w.k());
    let wd = w.dequantize();
    let mut y = vec![0f64; m * n];
    let mut mag = vec![0f64; m * n];
    for r in 0..m {
        for j in 0..n {
            for i in 0..k {
                let p = x[r * k + i] as f64 * wd[j * k + i] as f64;
                y[r * n + j] += p;
                mag[r * n + j] += p.abs();
            }
        }
    }
    (y, mag)
}

/// The magnitude of the terms the kernels sum for output (r, j):
/// `sum_b |w_scale_b| * a_scale_b * sum_i |a_i| * |q_i - zp_b|`. The integer block dot
/// products are exact in every kernel; differences between kernels are float rounding of
/// sums of such terms, so this is the natural normaliser for their relative error.
fn term_magnitude(acts: &QuantizedActs, r: usize, w: &Q4Matrix, j: usize) -> f64 {
    let (k, nb, view) = (w.k, w.nb, w.view());
    let mut t = 0f64;
    for b in 0..nb {
        let bytes = view.block_qs(j, b);
        let zp = view.zp(j, b) as f64;
        let mut s = 0f64;
        for e in 0..BLOCK {
            let q = if e < 16 {
                bytes[e] & 0x0F
            } else {
                bytes[e - 16] >> 4
            } as f64;
            s += (acts.q[r * k + b * BLOCK + e] as f64).abs() * (q - zp).abs();
        }
        t += view.scale(j, b).abs() as f64 * acts.scale[r * nb + b] as f64 * s;
    }
    t
}

#[test]
fn decodes_matmul_nbits_layout() {
    // n = 2, k = 64 (2 blocks per row). Block bytes: byte i = (2i) | (2i+1) << 4, so
    // element e has nibble e % 16.
    let block: Vec<u8> = (0..16u8)
        .map(|i| ((2 * i) & 15) | (((2 * i + 1) & 15) << 4))
        .collect();
    let b: Vec<u8> = block.iter().cycle().take(4 * 16).copied().collect();
    let scales = [1.0, 2.0, 0.5, -1.0];
    // Row 0: zp 3 (block 0), 5 (block 1) -> byte 0x53; row 1: 0 and 15 -> 0xF0.
    let zp = [0x53u8, 0xF0];
    let w = Q4Matrix::from_matmul_nbits(2, 64, &b, &scales, Some(&zp)).unwrap();
    let d = w.dequantize();
    for e in 0..64 {
        let q = (e % 16) as f32;
        assert_eq!(
            d[e],
            (q - if e < 32 { 3.0 } else { 5.0 }) * if e < 32 { 1.0 } else { 2.0 },
            "row 0 elem {e}"
        );
        assert_eq!(
            d[64 + e],
            (q - if e < 32 { 0.0 } else { 15.0 }) * if e < 32 { 0.5 } else { -1.0 },
            "row 1 elem {e}"
        );
    }
    // Without zero points: 8.
    let w = Q4Matrix::from_matmul_nbits(2, 64, &b, &scales, None).unwrap();
    assert_eq!(w.dequantize()[5], (5.0 - 8.0) * 1.0);
    assert_eq!((w.n(), w.k()), (2, 64));

    // Odd block count: zero-point rows are ceil(nb / 2) bytes.
    let b3: Vec<u8> = block.iter().cycle().take(3 * 16).copied().collect();
    let w = Q4Matrix::from_matmul_nbits(1, 96, &b3, &[1.0; 3], Some(&[0x21, 0x03])).unwrap();
    let d = w.dequantize();
    assert_eq!((d[0], d[32], d[64]), (-1.0, -2.0, -3.0));
}

/// Repacking moves blocks, never changes them: the same weights, the same scalar results bit
/// for bit, and back again; rows past a last partial group of 8 are padding only.
#[test]
fn layouts_hold_the_same_matrix() {
    let mut rng = Rng::new(11);
    for (n, nb, with_zp) in [(1, 1, false), (7, 3, true), (8, 2, false), (21, 27, true)] {
        let k = nb * BLOCK;
        let w = random_matrix(&mut rng, n, k, with_zp);
        let x = rng.f32s(5 * k, -1.0, 1.0);
        let reference = run(scalar(), &x, 5, &w);
        for packed in in_layouts(&w) {
            assert_eq!(packed.dequantize(), w.dequantize(), "{:?}", packed.layout());
            assert_eq!(
                run(scalar(), &x, 5, &packed),
                reference,
                "{:?}",
                packed.layout()
            );
            let back = packed.into_layout(Layout::RowBlocks);
            assert_eq!(back.view().qs, w.view().qs);
            assert_eq!(back.view().scales, w.view().scales);
            assert_eq!(back.view().zps, w.view().zps);
        }
        let cols8 = w.clone().into_layout(Layout::Cols8);
        assert_eq!(cols8.view().qs.len(), n.div_ceil(8) * 8 * nb * BLOCK_BYTES);
        assert_eq!(cols8.uniform_zero_point(), w.uniform_zero_point());
    }
}

/// Repacking where the weights lie (a model's file buffer) gives the matrix `into_layout`
/// gives; a layout that would pad rows is refused, the bytes untouched.
#[test]
fn repacked_in_place_is_the_same_matrix() {
    let mut rng = Rng::new(12);
    let mut scratch = Vec::new();
    for (n, nb, with_zp) in [(8, 1, false), (16, 3, true), (24, 27, false), (7, 2, true)] {
        let k = nb * BLOCK;
        let (b, s, zp) = random_nbits(&mut rng, n, k, with_zp);
        let w = Q4Matrix::from_matmul_nbits(n, k, &b, &s, zp.as_deref()).unwrap();
        for layout in [Layout::RowBlocks, Layout::Cols8] {
            let mut bytes = b.clone();
            let repacked = Q4Matrix::repack_in_place(n, k, &mut bytes, layout, &mut scratch);
            if layout == Layout::Cols8 && n % 8 != 0 {
                assert!(
                    !repacked && bytes == b,
                    "n = {n}: padding rows cannot fit in place"
                );
                continue;
            }
            assert!(repacked, "n = {n}, {layout:?}");
            let got =
                Q4Matrix::from_shared_in(n, k, Arc::new(bytes), layout, &s, zp.as_deref()).unwrap();
            let want = w.clone().into_layout(layout);
            assert_eq!(got.view().qs, want.view().qs);
            assert_eq!(got.view().scales, want.view().scales);
            assert_eq!(got.view().zps, want.view().zps);
            assert_eq!(got.uniform_zero_point(), want.uniform_zero_point());
        }
    }
    let mut short = vec![0u8; 8 * 16 - 1];
    assert!(!Q4Matrix::repack_in_place(
        8,
        32,
        &mut short,
        Layout::Cols8,
        &mut scratch
    ));
}

#[test]
fn rejects_bad_shapes() {
    let b = vec![0u8; 2 * 2 * 16];
    let s = vec![1f32; 4];
    assert!(Q4Matrix::from_matmul_nbits(2, 64, &b, &s, None).is_ok());
    let err = |r: Result<Q4Matrix, KernelError>| r.unwrap_err();
    assert_eq!(
        err(Q4Matrix::from_matmul_nbits(2, 63, &b, &s, None)),
        KernelError::KNotMultipleOfBlock { k: 63 }
    );
    assert_eq!(
        err(Q4Matrix::from_matmul_nbits(2, 48, &b, &s, None)),
        KernelError::KNotMultipleOfBlock { k: 48 }
    );
    assert!(matches!(
        err(Q4Matrix::from_matmul_nbits(0, 64, &[], &[], None)),
        KernelError::EmptyShape { .. }
    ));
    assert!(matches!(
        err(Q4Matrix::from_matmul_nbits(2, 0, &[], &[], None)),
        KernelError::EmptyShape { .. }
    ));
    assert!(matches!(
        err(Q4Matrix::from_matmul_nbits(2, 64, &b[1..], &s, None)),
        KernelError::BufferSize {
            buffer: "b",
            expected: 64,
            actual: 63
        }
    ));
    assert!(matches!(
        err(Q4Matrix::from_matmul_nbits(2, 64, &b, &s[..3], None)),
        KernelError::BufferSize {
            buffer: "scales",
            ..
        }
    ));
    assert!(matches!(
        err(Q4Matrix::from_matmul_nbits(2, 64, &b, &s, Some(&[0u8; 3]))),
        KernelError::BufferSize {
            buffer: "zero_points",
            expected: 2,
            actual: 3
        }
    ));
    assert!(matches!(
        err(Q4Matrix::from_matmul_nbits(
            usize::MAX / 2,
            64,
            &b,
            &s,
            None
        )),
        KernelError::ShapeOverflow { .. }
    ));
    assert!(matches!(
        err(Q4Matrix::from_matmul_nbits(
            3,
            usize::MAX - 31,
            &b,
            &s,
            None
        )),
        KernelError::ShapeOverflow { .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any combination of shapes and buffer lengths gives Ok or Err, never a panic.
    #[test]
    fn from_matmul_nbits_never_panics(
        n in prop_oneof![0usize..6, Just(usize::MAX), Just(usize::MAX / 16)],
        k in prop_oneof![0usize..130, Just(usize::MAX - 31), Just(1usize << 62)],
        b_len in 0usize..200,
        s_len in 0usize..20,
        zp_len in proptest::option::of(0usize..8),
    ) {
        let b = vec![0x5Au8; b_len];
        let s = vec![0.5f32; s_len];
        let zp = zp_len.map(|l| vec![0x88u8; l]);
        let r = Q4Matrix::from_matmul_nbits(n, k, &b, &s, zp.as_deref());
        if let Ok(w) = r {
            prop_assert_eq!(w.dequantize().len(), n * k);
        }
    }
}

/// Scalar kernel vs an f64 reference on the *same* int8 activations and dequantized
/// weights: only float summation order differs, so the error is at f32 rounding level
/// (bound used: 1e-5 of the magnitude of the summed terms).
#[test]
fn scalar_matches_dequantized_reference() {
    let mut rng = Rng::new(1);
    for &(m, n, k, with_zp) in &[
        (1, 7, 32, false),
        (3, 5, 320, true),
        (20, 9, 864, true),
        (5, 33, 96, false),
    ] {
        let w = random_matrix(&mut rng, n, k, with_zp);
        let x = rng.f32s(m * k, -3.0, 3.0);
        let acts = quantize_acts(&x, m, k, quantize_row_scalar);
        // The dequantized activations, back in natural order.
        let xq: Vec<f32> = (0..m * k)
            .map(|i| acts.q[i - i % BLOCK + kernel_order(i % BLOCK)] as f32 * acts.scale[i / BLOCK])
            .collect();
        let (yref, _) = float_ref(&xq, m, &w);
        let y = run(scalar(), &x, m, &w);
        for r in 0..m {
            for j in 0..n {
                let i = r * n + j;
                let tol = 1e-5 * term_magnitude(&acts, r, &w, j) + 1e-12;
                assert!(
                    (y[i] as f64 - yref[i]).abs() <= tol,
                    "m={m} n={n} k={k} [{r},{j}]: {} vs {}",
                    y[i],
                    yref[i]
                );
            }
        }
    }
}

/// W4A8 (int8 activations) vs full-float activations with the same dequantized weights.
/// Per-element activation error is at most max|x| / 254, so the error is bounded by
/// `max|x| / 254 * sum|w|`; for these inputs we require it to be <= 1% of
/// `sum_k |x_k * w_k|` for every output.
#[test]
fn w4a8_close_to_float() {
    let mut rng = Rng::new(2);
    for &(m, n, k, with_zp) in &[(1, 64, 320, false), (4, 64, 864, true), (20, 16, 320, true)] {
        let w = random_matrix(&mut rng, n, k, with_zp);
        let x = rng.f32s(m * k, -1.0, 1.0);
        let (yref, mag) = float_ref(&x, m, &w);
        for kernel in available() {
            let y = run(kernel, &x, m, &w);
            let mut worst = 0f64;
            for i in 0..m * n {
                let rel = (y[i] as f64 - yref[i]).abs() / mag[i];
                worst = worst.max(rel);
            }
            assert!(
                worst <= 0.01,
                "{}: m={m} n={n} k={k}: worst error {worst} of sum|x||w|",
                kernel.name()
            );
        }
    }
}

/// One large activation must not cost the rest of its row its precision (the reason for
/// a scale per block): block 0 holds only the outlier (quantized exactly), the other blocks
/// hold values 5000x smaller. With one scale per row they would all round to 0 and the
/// error would be their whole contribution; per block, it stays under 1% of it.
#[test]
fn outlier_keeps_other_blocks_precise() {
    let mut rng = Rng::new(4);
    let (n, k) = (32, 320);
    let w = random_matrix(&mut rng, n, k, true);
    let mut x = rng.f32s(k, -0.01, 0.01);
    x[..BLOCK].fill(0.0);
    x[5] = 50.0;
    let (yref, _) = float_ref(&x, 1, &w);
    let mut small = x.clone();
    small[5] = 0.0;
    let (_, mag_small) = float_ref(&small, 1, &w);
    for kernel in available() {
        let y = run(kernel, &x, 1, &w);
        for j in 0..n {
            let err = (y[j] as f64 - yref[j]).abs();
            assert!(
                err <= 0.01 * mag_small[j],
                "{} [{j}]: error {err} vs small-block magnitude {}",
                kernel.name(),
                mag_small[j]
            );
        }
    }
}

/// Two passes (the activations, then their quantization residual) give float-level
/// precision: within 1e-4 of `sum_k |x_k * w_k|` where one W4A8 pass is allowed 1%.
#[test]
fn two_pass_matches_float() {
    let mut rng = Rng::new(5);
    for &(m, n, k) in &[(1, 64, 320), (5, 16, 864), (7, 9, 96)] {
        let w = random_matrix(&mut rng, n, k, true);
        let x = rng.f32s(m * k, -1.0, 1.0);
        let (yref, mag) = float_ref(&x, m, &w);
        for kernel in available() {
            let mut y = vec![0f32; m * n];
            matmul_two_pass(kernel, &x, m, &w, &mut y);
            let worst = (0..m * n)
                .map(|i| (y[i] as f64 - yref[i]).abs() / mag[i])
                .fold(0f64, f64::max);
            assert!(
                worst <= 1e-4,
                "{}: m={m} n={n} k={k}: worst error {worst}",
                kernel.name()
            );
        }
    }
}

#[test]
fn zero_rows_and_odd_tiles() {
    let mut rng = Rng::new(3);
    let (m, n, k) = (6, 5, 96);
    let mut x = rng.f32s(m * k, -1.0, 1.0);
    x[k..2 * k].fill(0.0); // an all-zero row quantizes to scale 0 and gives exact zeros
    for w in in_layouts(&random_matrix(&mut rng, n, k, true)) {
        for kernel in available() {
            let y = run(kernel, &x, m, &w);
            assert!(y[n..2 * n].iter().all(|&v| v == 0.0), "{}", kernel.name());
            assert!(y.iter().all(|v| v.is_finite()), "{}", kernel.name());
            // m = 0 is a no-op.
            kernel.matmul(&[], 0, &w, &mut []);
        }
    }
}

/// A row's outputs do not depend on the rows computed with it: the same text position must
/// give the same logits whether it went through the model alone or in a batch of tree tokens
/// (the KV cache is reused across calls of different sizes; int8 rounding downstream would
/// amplify any last-bit difference). Bit-identical, for every tile shape the kernels use.
#[test]
fn rows_do_not_depend_on_batch() {
    let mut rng = Rng::new(5);
    for (n, nb) in [(13, 3), (8, 2), (9, 27)] {
        let k = nb * BLOCK;
        for with_zp in [false, true] {
            let m = 11;
            let matrix = random_matrix(&mut rng, n, k, with_zp);
            let x = rng.f32s(m * k, -1.0, 1.0);
            for (w, kernel) in in_layouts(&matrix)
                .iter()
                .flat_map(|w| available().into_iter().map(move |kr| (w, kr)))
            {
                let alone: Vec<Vec<f32>> = (0..m)
                    .map(|r| run(kernel, &x[r * k..(r + 1) * k], 1, w))
                    .collect();
                for batch in 2..=m {
                    let y = run(kernel, &x[..batch * k], batch, w);
                    for (r, row) in alone.iter().take(batch).enumerate() {
                        assert_eq!(
                            &y[r * n..(r + 1) * n],
                            &row[..],
                            "{} on {:?}: row {r} of {batch}, n={n} k={k} zp={with_zp}",
                            kernel.name(),
                            w.layout()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn small_rounding_is_round_ties_even() {
    let mut rng = Rng::new(6);
    let halves = (-600..=600).map(|i| i as f32 * 0.5);
    let near_halves = (-600..=600).flat_map(|i| {
        let v = i as f32 * 0.5;
        [v.next_up(), v.next_down()]
    });
    let random = rng.f32s(10_000, -200.0, 200.0);
    for v in halves
        .chain(near_halves)
        .chain(random)
        .chain([0.0, -0.0, 1e-30, -1e-30])
    {
        assert_eq!(round_ties_even_small(v), v.round_ties_even(), "{v}");
    }
    assert!(round_ties_even_small(f32::NAN).is_nan());
}

/// Every SIMD quantizer must produce the same int8 rows as the scalar one (they are what
/// makes the kernels comparable at 1e-4).
#[test]
fn kernels_agree_on_ties() {
    // Values that land exactly on .5 after scaling (max 127 in each block -> inv = 1).
    let k = 64;
    let mut x: Vec<f32> = (0..k).map(|i| (i as f32 - 32.0) + 0.5).collect();
    x[0] = 127.0;
    x[BLOCK] = -127.0;
    let b = vec![0x11u8; 2 * 16];
    let w = Q4Matrix::from_matmul_nbits(1, k, &b, &[1.0, 1.0], Some(&[0x00])).unwrap();
    let ys: Vec<f32> = available()
        .iter()
        .map(|kr| run(*kr, &x, 1, &w)[0])
        .collect();
    assert!(ys.windows(2).all(|p| p[0] == p[1]), "{ys:?}");
}

/// The SIMD quantizers write exactly the scalar one's int8 values and scales, in the kernels'
/// order (ties and zero blocks included). A block with an infinite value gets scale 0 from
/// all of them, so its int8 values (which differ: `vcvtps2dq` makes NaN -128) count for
/// nothing. Not checked: a NaN in a finite block, which the scalar quantizer makes 0 and
/// AVX2 -128 (either way the output is meaningless; the model never computes one).
#[test]
fn simd_quantizers_match_scalar() {
    let mut rng = Rng::new(21);
    let (m, k) = (3, 10 * BLOCK);
    let mut x = rng.f32s(m * k, -4.0, 4.0);
    x[..BLOCK]
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = i as f32 - 15.5);
    x[BLOCK] = 127.0;
    x[2 * BLOCK..3 * BLOCK].fill(0.0);
    x[3 * BLOCK + 7] = f32::INFINITY;
    let want = quantize_acts(&x, m, k, quantize_row_scalar);
    #[allow(unused_mut)]
    let mut simd: Vec<(&str, QuantizedActs)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    if x86::avx2_supported() {
        simd.push(("avx2", x86::quantize_avx2(&x, m, k)));
    }
    #[cfg(target_arch = "aarch64")]
    if aarch64::neon_supported() {
        simd.push(("neon", aarch64::quantize_neon(&x, m, k)));
    }
    for (name, got) in simd {
        let bits = |s: &[f32]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.scale), bits(&want.scale), "{name}");
        for (b, &scale) in want.scale.iter().enumerate() {
            let block = b * BLOCK..(b + 1) * BLOCK;
            if scale != 0.0 {
                assert_eq!(got.q[block.clone()], want.q[block], "{name}, block {b}");
            }
        }
        assert_eq!(want.scale[3], 0.0, "an infinite value: scale 0");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Every available SIMD kernel vs scalar, on every layout: |diff| <= 1e-4 * (magnitude of
    /// the summed terms).
    #[test]
    fn simd_kernels_match_scalar(
        n in 1usize..20,
        nb in 1usize..12,
        m in 1usize..11,
        with_zp in any::<bool>(),
        x_range in prop_oneof![Just(1e-3f32), Just(1.0f32), Just(1e3f32)],
        seed in any::<u64>(),
    ) {
        let k = nb * BLOCK;
        let mut rng = Rng::new(seed);
        let w = random_matrix(&mut rng, n, k, with_zp);
        let x = rng.f32s(m * k, -x_range, x_range);
        let acts = quantize_acts(&x, m, k, quantize_row_scalar);
        let y0 = run(scalar(), &x, m, &w);
        let layouts = in_layouts(&w);
        let simd = available().into_iter().skip(1);
        for (w, kernel) in layouts.iter().flat_map(|w| simd.clone().map(move |kr| (w, kr))) {
            let y = run(kernel, &x, m, w);
            for r in 0..m {
                for j in 0..n {
                    let i = r * n + j;
                    let tol = 1e-4 * term_magnitude(&acts, r, w, j) + 1e-30;
                    prop_assert!(
                        ((y[i] - y0[i]) as f64).abs() <= tol,
                        "{} on {:?} vs scalar: m={} n={} k={} [{},{}]: {} vs {} (tol {})",
                        kernel.name(), w.layout(), m, n, k, r, j, y[i], y0[i], tol
                    );
                }
            }
        }
    }
}

#[test]
fn registry() {
    let all = available();
    assert_eq!(all[0].name(), "scalar");
    for k in &all {
        assert!(KERNEL_NAMES.contains(&k.name()));
        assert_eq!(by_name(k.name()).unwrap().name(), k.name());
    }
    assert!(by_name("nope").is_none());
    #[cfg(target_arch = "x86_64")]
    assert!(by_name("neon").is_none());
    #[cfg(target_arch = "aarch64")]
    assert!(by_name("avx2").is_none());
    eprintln!(
        "available kernels: {:?}",
        all.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
}

/// `select()` honours NEXTWORD_KERNEL when it names a supported kernel (run the tests
/// with e.g. `NEXTWORD_KERNEL=neon`); otherwise it picks the best available.
#[test]
fn select_honours_env() {
    let chosen = select().name();
    match std::env::var("NEXTWORD_KERNEL")
        .ok()
        .and_then(|v| by_name(v.trim()))
    {
        Some(k) => assert_eq!(chosen, k.name()),
        None => assert_eq!(chosen, available().last().unwrap().name()),
    }
    eprintln!("select() = {chosen}");
}

/// Rough single-thread timings (no assertions). Run in release:
/// `cargo test --release -p nextword-core --lib kernels::tests::timing -- --ignored --nocapture`
#[test]
#[ignore]
fn timing() {
    let mut rng = Rng::new(4);
    for &(m, n, k) in &[
        (1, 8192, 320),
        (6, 8192, 320),
        (20, 8192, 320),
        (1, 864, 320),
        (1, 320, 864),
        (6, 864, 320),
        (20, 864, 320),
    ] {
        // Symmetric, as training/export.py writes them (no zero points).
        let w = random_matrix(&mut rng, n, k, false);
        let x = rng.f32s(m * k, -1.0, 1.0);
        let mut out = vec![0f32; m * n];
        for kernel in available() {
            let w = w.clone().into_layout(kernel.layout());
            kernel.matmul(&x, m, &w, &mut out);
            // Per-call times; report the minimum (least disturbed by other load on the
            // machine) and the median.
            let start = std::time::Instant::now();
            let mut times = Vec::new();
            while start.elapsed().as_secs_f64() < 0.3 || times.len() < 5 {
                let t = std::time::Instant::now();
                kernel.matmul(&x, m, &w, &mut out);
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let (best, median) = (times[0], times[times.len() / 2]);
            let gmacs = (m * n * k) as f64 / best / 1e9;
            eprintln!(
                "m={m:3} n={n:5} k={k:4} {:>11}: min {:8.1} us ({gmacs:6.2} GMAC/s), median {:8.1} us",
                kernel.name(),
                best * 1e6,
                median * 1e6
            );
        }
    }
}
