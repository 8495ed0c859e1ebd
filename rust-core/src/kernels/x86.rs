//! x86_64 kernels: AVX2 (`vpmaddubsw`) and AVX-512 VNNI (`vpdpbusd`).
//!
//! The x86 integer dot instructions take one unsigned-u8 and one signed-i8 operand, while
//! both of ours are signed: the weight nibbles centred on their zero point (`q - zp`,
//! -15..15) and the int8 activations. Both kernels multiply the raw nibbles `q` (u8, 0..15)
//! by the activations and take the zero point off afterwards, `sum((q - zp) * a) =
//! sum(q * a) - zp * sum(a)`, with the `sum(a)` terms computed once per call: a weight block
//! needs no work beyond unpacking. They read several blocks of a weight row per load (AVX2
//! 2, VNNI 4); its low nibbles are the blocks' even elements and its high nibbles their odd
//! ones, and the activations are laid out to match once per call ([`step_layout`]).
//!
//! Per block the integer dot products stay in SIMD lanes: they are converted to f32 and
//! FMA'd with the product of the block's weight and activation scales into a lane
//! accumulator, so there is only one horizontal reduction per output (not one per block).
//!
//! The row-major paths tile rows as described in `drive_rows!` (mod.rs): 4 activation rows
//! share each unpacked weight block when m > 1 (VNNI, with 32 registers: 4 activation rows x
//! 2 weight rows), 4 weight rows share each activation load when m = 1.
//!
//! Both read the weights the model repacks for them, [`Layout::Cols8`], faster (measured on
//! the model's shapes: AVX2 about 2x, `kernels` bench; VNNI 20-token forward 2.70 -> 2.04 ms
//! on an AVX-512 host): there the lanes are 8 output columns ([`tile_avx2_cols8`],
//! [`tile_vnni_cols8`]), so there are no horizontal sums and the float work (convert, scale
//! product, FMA) is done once per block for 8 outputs instead of once per 2 (AVX2) or 4
//! (VNNI) blocks per output. They keep their row-major paths for matrices left in the file's
//! order (not repacked: a matrix built outside a model load, or the weights of a node tract
//! could not fold).

use std::arch::x86_64::*;

use super::{
    act_scale, check_matmul_args, quantize_acts, Layout, Q4Kernel, Q4Matrix, Q4View, QuantizedActs,
    BLOCK, BLOCK_BYTES, GROUP_ROWS, MR, NR,
};

pub(crate) fn avx2_supported() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

pub(crate) fn avx512vnni_supported() -> bool {
    avx2_supported()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

#[derive(Debug)]
pub(crate) struct Avx2;
pub(crate) static AVX2: Avx2 = Avx2;

#[derive(Debug)]
pub(crate) struct Avx512Vnni;
pub(crate) static AVX512VNNI: Avx512Vnni = Avx512Vnni;

impl Q4Kernel for Avx2 {
    fn name(&self) -> &'static str {
        "avx2"
    }

    fn layout(&self) -> Layout {
        Layout::Cols8
    }

    fn matmul(&self, x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
        check_matmul_args(x, m, w, out);
        // Cheap (cached) check that keeps this safe fn sound even if the static leaked out.
        assert!(
            avx2_supported(),
            "avx2 kernel used on a CPU without avx2/fma"
        );
        // SAFETY: avx2 + fma are present (checked above); shapes checked above.
        unsafe {
            match w.layout() {
                Layout::Cols8 => matmul_avx2_cols8(x, m, w, out),
                Layout::RowBlocks => matmul_avx2(x, m, w, out),
            }
        }
    }
}

impl Q4Kernel for Avx512Vnni {
    fn name(&self) -> &'static str {
        "avx512vnni"
    }

    fn layout(&self) -> Layout {
        Layout::Cols8
    }

    fn matmul(&self, x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
        check_matmul_args(x, m, w, out);
        assert!(
            avx512vnni_supported(),
            "avx512vnni kernel used on a CPU without avx512 vnni"
        );
        // SAFETY: all enabled features are present (checked above); shapes checked above.
        unsafe {
            match w.layout() {
                Layout::Cols8 => matmul_vnni_cols8(x, m, w, out),
                Layout::RowBlocks => matmul_vnni(x, m, w, out),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

#[target_feature(enable = "avx2,fma")]
#[inline]
fn hmax_ps(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// AVX2 version of [`super::quantize_row_scalar`], bit-identical to it: same scale
/// formula, and `vcvtps2dq` rounds to nearest-even like `round_ties_even`; each block written
/// in the kernels' order.
/// `|x * inv| <= 127` for finite blocks, so the saturating packs never clip.
#[target_feature(enable = "avx2,fma")]
fn quantize_row_avx2(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    let k = x.len();
    assert!(k.is_multiple_of(BLOCK) && q.len() == k && scales.len() == k / BLOCK);
    let xp = x.as_ptr();
    let qp = q.as_mut_ptr();
    // SAFETY: all offsets below are < k (k multiple of 32), bounds asserted above.
    unsafe {
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
        // packs_epi32/packs_epi16 interleave the 128-bit lanes; this restores element order.
        let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let even_odd = _mm256_setr_epi8(
            0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14, 1, 3,
            5, 7, 9, 11, 13, 15,
        );
        for (b, scale) in scales.iter_mut().enumerate() {
            let p = xp.add(b * BLOCK);
            let (x0, x1) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            let (x2, x3) = (_mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24)));
            let vmax = _mm256_max_ps(
                _mm256_max_ps(_mm256_and_ps(x0, abs_mask), _mm256_and_ps(x1, abs_mask)),
                _mm256_max_ps(_mm256_and_ps(x2, abs_mask), _mm256_and_ps(x3, abs_mask)),
            );
            let inv;
            (*scale, inv) = act_scale(hmax_ps(vmax));
            let vinv = _mm256_set1_ps(inv);
            let i0 = _mm256_cvtps_epi32(_mm256_mul_ps(x0, vinv));
            let i1 = _mm256_cvtps_epi32(_mm256_mul_ps(x1, vinv));
            let i2 = _mm256_cvtps_epi32(_mm256_mul_ps(x2, vinv));
            let i3 = _mm256_cvtps_epi32(_mm256_mul_ps(x3, vinv));
            let packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            let packed = _mm256_permutevar8x32_epi32(packed, perm);
            // The kernels' order: each 128-bit lane's even bytes to its low half, odd bytes
            // to its high half, then the 64-bit halves as [even 0-14, even 16-30, odd, odd].
            let split = _mm256_shuffle_epi8(packed, even_odd);
            let ordered = _mm256_permute4x64_epi64::<0b11_01_10_00>(split);
            _mm256_storeu_si256(qp.add(b * BLOCK) as *mut __m256i, ordered);
        }
    }
}

pub(super) fn quantize_avx2(x: &[f32], m: usize, k: usize) -> QuantizedActs {
    // SAFETY: only called from the kernels' entry points, after feature detection.
    quantize_acts(x, m, k, |x, q, s| unsafe { quantize_row_avx2(x, q, s) })
}

/// Horizontal sums of an `R x NRR` accumulator tile, four accumulators at a time through
/// one combined `vhaddps` tree. A group of fewer than four is padded with zeros, so every
/// accumulator is summed in the same order whatever the tile's shape: a row's outputs are
/// then bit-identical whether it was computed alone (m = 1), in a group of 4 or among the
/// 2-3 rows left over, i.e. the same position gives the same logits whether it reached
/// the KV cache in one call or another (int8 activation rounding would amplify any
/// difference).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn reduce<const R: usize, const NRR: usize>(acc: [[__m256; R]; NRR]) -> [[f32; R]; NRR] {
    let mut res = [[0f32; R]; NRR];
    // Accumulator `i` in weight-row-major order, zero past the end.
    let a = |i: usize| {
        if i < R * NRR {
            acc[i / R][i % R]
        } else {
            _mm256_setzero_ps()
        }
    };
    for i in (0..R * NRR).step_by(4) {
        // [a0 01, a0 23, a1 01, a1 23 | a0 45, a0 67, a1 45, a1 67], same for a2/a3, then
        // [a0, a1, a2, a3 | a0, a1, a2, a3] partial sums; add the halves.
        let s = _mm256_hadd_ps(
            _mm256_hadd_ps(a(i), a(i + 1)),
            _mm256_hadd_ps(a(i + 2), a(i + 3)),
        );
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let mut tmp = [0f32; 4];
        // SAFETY: tmp has 4 floats.
        unsafe { _mm_storeu_ps(tmp.as_mut_ptr(), s) };
        for (j, v) in tmp.into_iter().enumerate().take(R * NRR - i) {
            res[(i + j) / R][(i + j) % R] = v;
        }
    }
    res
}

// ---------------------------------------------------------------------------------------
// AVX2

/// `sum_b w_scale_b * a_scale_tb * sum_i (q[b,i] - zp_b) * a_t[b,i]` for R activation rows
/// x NRR weight rows `ns`, two blocks per step: one 32-byte load of a weight row holds 2
/// blocks, its low nibbles are their even elements and its high nibbles their odd ones.
/// `vpmaddubsw` multiplies the raw nibbles (u8) by the int8 activations (laid out by
/// [`step_layout`]) into i16 pairs (|pair| <= 2 * 15 * 127, and the even and odd halves
/// added: <= 7620, no saturation), `vpmaddwd` by ones widens them to i32 lanes (block j of
/// the step in lanes 4j..4j + 4), which start from the zero-point terms of
/// [`step_terms_layout`]. `UNIFORM`: the terms include the matrix's single zero point.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_avx2<const R: usize, const NRR: usize, const UNIFORM: bool>(
    w: &Q4View,
    ns: [usize; NRR],
    acts: [*const i8; R],
    a_terms: [*const u32; R],
) -> [[f32; R]; NRR] {
    let nb = w.blocks_per_row();
    let qs: [*const u8; NRR] = core::array::from_fn(|i| w.row_qs(ns[i]).as_ptr());
    let scales: [*const f32; NRR] = core::array::from_fn(|i| w.row_scales(ns[i]).as_ptr());
    let zps: [*const u8; NRR] = core::array::from_fn(|i| w.row_zps(ns[i]).as_ptr());
    let nibble = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    // i32 lane -> block of the step: lanes 4j..4j + 4 hold block j.
    let lane_block = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = [[_mm256_setzero_ps(); R]; NRR];
    for g in 0..nb.div_ceil(PAIR) {
        let blocks = (nb - g * PAIR).min(PAIR);
        for i in 0..NRR {
            let q = qs[i].add(g * PAIR * BLOCK_BYTES);
            let s = scales[i].add(g * PAIR);
            // A last single block is loaded alone (never past the row), the rest zero.
            let (v, d2) = if blocks == PAIR {
                (
                    _mm256_loadu_si256(q as *const __m256i),
                    _mm_castsi128_ps(_mm_loadl_epi64(s as *const __m128i)),
                )
            } else {
                (
                    _mm256_zextsi128_si256(_mm_loadu_si128(q as *const __m128i)),
                    _mm_set_ss(*s),
                )
            };
            let lo = _mm256_and_si256(v, nibble);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
            let d = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d2), lane_block);
            // Per-block zero points spread over the lanes (the sums carry a uniform one).
            let zp = if UNIFORM {
                _mm256_setzero_si256()
            } else {
                let z1 = if blocks == PAIR {
                    *zps[i].add(g * PAIR + 1)
                } else {
                    0
                };
                let z = _mm_setr_epi32(i32::from(*zps[i].add(g * PAIR)), i32::from(z1), 0, 0);
                _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(z), lane_block)
            };
            for t in 0..R {
                let a = acts[t].add(g * PAIR * BLOCK);
                let terms = a_terms[t].add(g * 8 * PAIR);
                let a_even = _mm256_loadu_si256(a as *const __m256i);
                let a_odd = _mm256_loadu_si256(a.add(PAIR * BLOCK_BYTES) as *const __m256i);
                let p16 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(lo, a_even),
                    _mm256_maddubs_epi16(hi, a_odd),
                );
                let sums = _mm256_loadu_si256(terms.add(4 * PAIR) as *const __m256i);
                let start = if UNIFORM {
                    sums
                } else {
                    _mm256_mullo_epi32(zp, sums)
                };
                let dot = _mm256_add_epi32(start, _mm256_madd_epi16(p16, ones));
                let sa = _mm256_loadu_ps(terms as *const f32);
                acc[i][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(d, sa), acc[i][t]);
            }
        }
    }
    reduce(acc)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn matmul_avx2(x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
    let acts = quantize_avx2(x, m, w.k());
    let aq = step_layout(&acts.q, m, w.k(), PAIR);
    let terms = step_terms_layout(
        &aq,
        &acts.scale,
        w.k() / BLOCK,
        PAIR,
        w.uniform_zero_point(),
    );
    // 16 ymm registers: a 4 x 2 tile would spill, so one weight row per 4 activation rows.
    if w.uniform_zero_point().is_some() {
        drive_rows!(w, &aq, &terms, m, tile_avx2[true], 1, out);
    } else {
        drive_rows!(w, &aq, &terms, m, tile_avx2[false], 1, out);
    }
}

/// Block `b`'s zero points of a [`Layout::Cols8`] group, one per i32 lane (zeros if
/// `UNIFORM`: the activation sums then carry the matrix's single zero point).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn cols8_zero_points<const UNIFORM: bool>(zps: *const u8, b: usize) -> __m256i {
    if UNIFORM {
        _mm256_setzero_si256()
    } else {
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(zps.add(b * GROUP_ROWS) as *const __m128i))
    }
}

/// `zp * sum(a)` per lane for one row and block: `sum` itself if `UNIFORM` (it already
/// carries the zero point), else times the lanes' zero points.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn cols8_zero_point_term<const UNIFORM: bool>(zp: __m256i, sum: i32) -> __m256i {
    let sum = _mm256_set1_epi32(sum);
    if UNIFORM {
        sum
    } else {
        _mm256_mullo_epi32(zp, sum)
    }
}

/// [`Layout::Cols8`]: `sum_b w_scale_b * a_scale_tb * sum_i (q[b,i] - zp_b) * a_t[b,i]` for R
/// activation rows x the 8 weight rows (output columns) of `group`, one per i32 / f32 lane.
/// Per block, chunk `j`'s 32-byte load holds 8 weights of each column (low nibbles: the
/// chunk's even elements, high nibbles: its odd ones); `vpmaddubsw` by the 4 matching int8
/// activations broadcast to every lane gives i16 pairs; the block's 8 of them are summed in
/// i16 (each <= 2 * 15 * 127 in magnitude, the 8 <= 30480: no overflow), `vpmaddwd` by ones
/// widens them to the column's block dot product `sum(q * a)`, from which the zero-point term
/// `zp * sum(a)` comes off exactly. One convert and one FMA per block for 8 outputs, the sum
/// over blocks in block order in each lane: a row's outputs do not depend on `R`.
/// `acts`, `a_scales`, `a_sums`: the R rows' int8 activations, block scales and per-block
/// `sum(a)` (times the matrix's single zero point if `UNIFORM`), as
/// [`interleave_row_groups`] lays them out.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_avx2_cols8<const R: usize, const UNIFORM: bool>(
    w: &Q4View,
    group: usize,
    acts: *const i8,
    a_scales: *const f32,
    a_sums: *const i32,
) -> [__m256; R] {
    let (qs, scales, zps) = w.group(group);
    let (qs, scales, zps) = (qs.as_ptr(), scales.as_ptr(), zps.as_ptr());
    let nibble = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..w.blocks_per_row() {
        let q = qs.add(b * GROUP_ROWS * BLOCK_BYTES);
        let mut p16 = [_mm256_setzero_si256(); R];
        for j in 0..4 {
            let v = _mm256_loadu_si256(q.add(j * 32) as *const __m256i);
            let lo = _mm256_and_si256(v, nibble);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
            for (t, p16) in p16.iter_mut().enumerate() {
                // The block's activations in kernel order: even elements, then odd ones.
                let a = acts.add((b * R + t) * BLOCK);
                let even = _mm256_set1_epi32((a.add(4 * j) as *const i32).read_unaligned());
                let odd = (a.add(BLOCK_BYTES + 4 * j) as *const i32).read_unaligned();
                let pair = _mm256_add_epi16(
                    _mm256_maddubs_epi16(lo, even),
                    _mm256_maddubs_epi16(hi, _mm256_set1_epi32(odd)),
                );
                *p16 = _mm256_add_epi16(*p16, pair);
            }
        }
        let d = _mm256_loadu_ps(scales.add(b * GROUP_ROWS));
        let zp = cols8_zero_points::<UNIFORM>(zps, b);
        for t in 0..R {
            let zp_term = cols8_zero_point_term::<UNIFORM>(zp, *a_sums.add(b * R + t));
            let dot = _mm256_sub_epi32(_mm256_madd_epi16(p16[t], ones), zp_term);
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(*a_scales.add(b * R + t)));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[t]);
        }
    }
    acc
}

/// Activation rows in the groups the [`Layout::Cols8`] tiles take (`group` rows, the last
/// fewer), each group's blocks interleaved: unit `b` (`unit` values: a block's int8 activations, or
/// its one scale) of the group's row `t` at `(b * rows + t) * unit` from the group's start,
/// `first_row * row_len`. A tile then reads all its rows at one pointer plus constant offsets:
/// with a pointer per row and per term, 4 rows took 12 registers and spilled to the stack.
fn interleave_row_groups<T: Copy>(v: &[T], m: usize, unit: usize, group: usize) -> Vec<T> {
    let row_len = v.len() / m.max(1);
    let mut out = Vec::with_capacity(v.len());
    let mut r0 = 0;
    while r0 < m {
        let rows = (m - r0).min(group);
        for b in 0..row_len / unit {
            for t in 0..rows {
                let start = (r0 + t) * row_len + b * unit;
                out.extend_from_slice(&v[start..start + unit]);
            }
        }
        r0 += rows;
    }
    out
}

/// The [`Layout::Cols8`] loop nest shared by the AVX2 and VNNI kernels (a macro so that
/// `$tile` is inlined into each caller's `#[target_feature]` function): activations
/// quantized once, then per group of 8 output columns, activation rows in groups of `$rows`
/// through `$tile::<$rows, UNIFORM>`, the `$rest` left over through the same tile with fewer
/// rows.
macro_rules! drive_cols8 {
    ($x:expr, $m:expr, $w:expr, $out:expr, $tile:ident, $rows:literal, [$($rest:literal),*]) => {{
        let (x, m, w, out): (&[f32], usize, &Q4Matrix, &mut [f32]) = ($x, $m, $w, $out);
        let (n, k) = (w.n(), w.k());
        let nb = k / BLOCK;
        let acts = quantize_avx2(x, m, k);
        let q = interleave_row_groups(&acts.q, m, BLOCK, $rows);
        let scales = interleave_row_groups(&acts.scale, m, 1, $rows);
        let factor = w.uniform_zero_point().map_or(1, i32::from);
        // In `q`'s order: its chunks of 32 are its blocks.
        let sums: Vec<i32> = q
            .chunks_exact(BLOCK)
            .map(|a| factor * a.iter().map(|&v| i32::from(v)).sum::<i32>())
            .collect();
        let view = w.view();
        for group in 0..n.div_ceil(GROUP_ROWS) {
            let (col0, cols) = (group * GROUP_ROWS, (n - group * GROUP_ROWS).min(GROUP_ROWS));
            let mut r0 = 0;
            // `$rows` activation rows share each unpacked weight chunk (AVX2 4: its 16
            // registers; VNNI 8, in 32, which also halves the unpacking per row: 20-token
            // forward -3.4%); those left over go through the same tile with fewer rows (the
            // groups of `interleave_row_groups`).
            macro_rules! rows {
                ($R:expr) => {{
                    let a = q[r0 * k..].as_ptr();
                    let s = scales[r0 * nb..].as_ptr();
                    let z = sums[r0 * nb..].as_ptr();
                    let acc = if w.uniform_zero_point().is_some() {
                        $tile::<$R, true>(&view, group, a, s, z)
                    } else {
                        $tile::<$R, false>(&view, group, a, s, z)
                    };
                    for (t, acc) in acc.into_iter().enumerate() {
                        let dst = &mut out[(r0 + t) * n + col0..][..cols];
                        if cols == GROUP_ROWS {
                            // A whole group goes straight to `out` (through `lanes`, a `memcpy`
                            // call per tile row: 1.6% of a 20-token forward).
                            _mm256_storeu_ps(dst.as_mut_ptr(), acc);
                        } else {
                            let mut lanes = [0f32; GROUP_ROWS];
                            _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
                            dst.copy_from_slice(&lanes[..cols]);
                        }
                    }
                }};
            }
            while r0 + $rows <= m {
                rows!($rows);
                r0 += $rows;
            }
            match m - r0 {
                $($rest => rows!($rest),)*
                _ => {}
            }
        }
    }};
}

#[target_feature(enable = "avx2,fma")]
unsafe fn matmul_avx2_cols8(x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
    drive_cols8!(x, m, w, out, tile_avx2_cols8, 4, [1, 2, 3])
}

// ---------------------------------------------------------------------------------------
// AVX-512 VNNI

/// Blocks per [`tile_vnni`] step: one 64-byte load of a weight row.
const QUAD: usize = 4;
/// Blocks per [`tile_avx2`] step: one 32-byte load of a weight row.
const PAIR: usize = 2;

/// Each activation row laid out for a kernel that reads `step` blocks of a weight row at a
/// time: per step, the blocks' even elements (16 each, the weights' low nibbles), then their
/// odd elements (high nibbles); a last step of fewer blocks is padded with zeros.
/// `q`: `[m, k]` in the kernels' order (each block's even elements, then its odd ones).
fn step_layout(q: &[i8], m: usize, k: usize, step: usize) -> Vec<i8> {
    let nb = k / BLOCK;
    let step_bytes = step * BLOCK;
    let row_bytes = nb.div_ceil(step) * step_bytes;
    let mut out = vec![0i8; m * row_bytes];
    for (src_row, dst_row) in q.chunks_exact(k).zip(out.chunks_exact_mut(row_bytes)) {
        for (b, block) in src_row.chunks_exact(BLOCK).enumerate() {
            let dst = (b / step) * step_bytes + (b % step) * BLOCK_BYTES;
            let (even, odd) = block.split_at(BLOCK_BYTES);
            dst_row[dst..dst + BLOCK_BYTES].copy_from_slice(even);
            let dst = dst + step * BLOCK_BYTES;
            dst_row[dst..dst + BLOCK_BYTES].copy_from_slice(odd);
        }
    }
    out
}

/// Per-step terms of the activations laid out by [`step_layout`], as 32-bit words: per row
/// and step, `4 * step` f32 scales (block `j` of the step's in i32 lanes `4j..4j + 4`, the
/// lanes of its dot product; 0 past the last block), then `4 * step` i32 sums. One plain
/// load each.
///
/// The x86 integer dot instructions take the unsigned operand first, so the kernels multiply
/// the raw nibbles `q` (0..15) by the int8 activations `a` and the zero point comes off as
/// `sum((q - zp) * a) = sum(q * a) - zp * sum(a)`, per i32 lane: the sums are those of the
/// lane's 8 activations (4 even, 4 odd), times `-zp` when the matrix has one zero point
/// (`uniform_zp`), which the kernels' dot products then start from: the block dot products
/// stay exact integers. Otherwise the kernels multiply them by each block's `zp` (the sums
/// are then negated, times 1).
fn step_terms_layout(
    aq: &[i8],
    scales: &[f32],
    nb: usize,
    step: usize,
    uniform_zp: Option<u8>,
) -> Vec<u32> {
    let factor = -uniform_zp.map_or(1, i32::from);
    let (steps, step_bytes) = (nb.div_ceil(step), step * BLOCK);
    let rows = scales.len().checked_div(nb).unwrap_or(0);
    let mut out = Vec::with_capacity(rows * steps * 8 * step);
    for (row, row_scales) in scales.chunks_exact(nb).enumerate() {
        let row_acts = &aq[row * steps * step_bytes..(row + 1) * steps * step_bytes];
        for (g, acts) in row_acts.chunks_exact(step_bytes).enumerate() {
            for lane in 0..4 * step {
                let scale = row_scales.get(g * step + lane / 4).copied().unwrap_or(0.0);
                out.push(scale.to_bits());
            }
            let (even, odd) = acts.split_at(step * BLOCK_BYTES);
            for (e, o) in even.chunks_exact(4).zip(odd.chunks_exact(4)) {
                let sum: i32 = e.iter().chain(o).map(|&a| i32::from(a)).sum();
                out.push((sum * factor) as u32);
            }
        }
    }
    out
}

/// Same as [`tile_avx2`], four blocks per step: one 64-byte (masked) load of a weight row
/// holds 4 blocks, its low nibbles are their even elements and its high nibbles their odd
/// ones, each block in 4 i32 lanes. Two chained `vpdpbusd` (low nibbles by the even
/// activations, high by the odd, laid out by [`step_layout`]) give each lane its share of
/// the block's dot product, so the float work (convert, scale product, FMA) and the scale
/// broadcast are done once per 128 weights. Terms from [`step_terms_layout`]. `UNIFORM`: the
/// terms include the matrix's single zero point.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
#[inline]
unsafe fn tile_vnni<const R: usize, const NRR: usize, const UNIFORM: bool>(
    w: &Q4View,
    ns: [usize; NRR],
    acts: [*const i8; R],
    a_terms: [*const u32; R],
) -> [[f32; R]; NRR] {
    let nb = w.blocks_per_row();
    let qs: [*const u8; NRR] = core::array::from_fn(|i| w.row_qs(ns[i]).as_ptr());
    let scales: [*const f32; NRR] = core::array::from_fn(|i| w.row_scales(ns[i]).as_ptr());
    let zps: [*const u8; NRR] = core::array::from_fn(|i| w.row_zps(ns[i]).as_ptr());
    let nibble = _mm512_set1_epi8(0x0F);
    // i32 lane -> block of the step: lanes 4j..4j + 4 hold block j.
    let lane_block = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    let mut acc = [[_mm512_setzero_ps(); R]; NRR];
    for g in 0..nb.div_ceil(QUAD) {
        // Masked loads never read past the row's last block (nor past the matrix).
        let blocks = (nb - g * QUAD).min(QUAD);
        let byte_mask: __mmask64 = u64::MAX >> (64 - blocks * BLOCK_BYTES);
        let block_mask: __mmask8 = (1u8 << blocks) - 1;
        let mut sa = [_mm512_setzero_ps(); R];
        let mut sums = [_mm512_setzero_si512(); R];
        for t in 0..R {
            let terms = a_terms[t].add(g * (8 * QUAD));
            sa[t] = _mm512_loadu_ps(terms as *const f32);
            sums[t] = _mm512_loadu_si512(terms.add(16) as *const _);
        }
        for i in 0..NRR {
            let v =
                _mm512_maskz_loadu_epi8(byte_mask, qs[i].add(g * QUAD * BLOCK_BYTES) as *const i8);
            let lo = _mm512_and_si512(v, nibble);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nibble);
            let d = _mm512_permutexvar_ps(
                lane_block,
                _mm512_castps128_ps512(_mm_maskz_loadu_ps(block_mask, scales[i].add(g * QUAD))),
            );
            // Per-block zero points spread over the lanes (the sums carry a uniform one).
            let zp = if UNIFORM {
                _mm512_setzero_si512()
            } else {
                let mut z = [0f32; QUAD];
                for (j, z) in z.iter_mut().enumerate().take(blocks) {
                    *z = f32::from(*zps[i].add(g * QUAD + j));
                }
                _mm512_cvtps_epi32(_mm512_permutexvar_ps(
                    lane_block,
                    _mm512_castps128_ps512(_mm_loadu_ps(z.as_ptr())),
                ))
            };
            for t in 0..R {
                let a = acts[t].add(g * (QUAD * BLOCK));
                let (a_even, a_odd) = (
                    _mm512_loadu_si512(a as *const _),
                    _mm512_loadu_si512(a.add(QUAD * BLOCK_BYTES) as *const _),
                );
                // -zp * sum(a) per lane, then vpdpbusd adds sum(q * a): u8 x i8, groups of 4
                // products summed straight into the i32 lanes. Exact.
                let start = if UNIFORM {
                    sums[t]
                } else {
                    _mm512_mullo_epi32(zp, sums[t])
                };
                let dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo, a_even), hi, a_odd);
                acc[i][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, sa[t]), acc[i][t]);
            }
        }
    }
    let mut acc256 = [[_mm256_setzero_ps(); R]; NRR];
    for i in 0..NRR {
        for t in 0..R {
            let lo = _mm512_castps512_ps256(acc[i][t]);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc[i][t])));
            acc256[i][t] = _mm256_add_ps(lo, hi);
        }
    }
    reduce(acc256)
}

/// [`tile_avx2_cols8`] with `vpdpbusd` (256-bit, AVX-512 VL): each chunk's nibbles times
/// the broadcast activations go straight into the i32 lanes, which start from the
/// zero-point term `-zp * sum(a)`: the same exact integer dot products, hence the same
/// outputs, in two instructions per chunk and row where AVX2 takes four (`vpmaddubsw`
/// twice, two adds), and no final widening. 256-bit rather than 512-bit lanes so that it
/// reads the same [`Layout::Cols8`]: the model repacks the weights once, for whichever
/// x86 kernel runs.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
#[inline]
unsafe fn tile_vnni_cols8<const R: usize, const UNIFORM: bool>(
    w: &Q4View,
    group: usize,
    acts: *const i8,
    a_scales: *const f32,
    a_sums: *const i32,
) -> [__m256; R] {
    let (qs, scales, zps) = w.group(group);
    let (qs, scales, zps) = (qs.as_ptr(), scales.as_ptr(), zps.as_ptr());
    let nibble = _mm256_set1_epi8(0x0F);
    // Independent accumulator chains per row (`vpdpbusd` has a latency of several cycles;
    // one chain of eight per block kept the decode step, one row, waiting on it): one per
    // chunk for one or two rows, two (even and odd chunks) for more, whose other rows' chains
    // fill the pipeline, at one combining add per block and row.
    let chains = if R >= 3 { 2 } else { 4 };
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..w.blocks_per_row() {
        let q = qs.add(b * GROUP_ROWS * BLOCK_BYTES);
        let zp = cols8_zero_points::<UNIFORM>(zps, b);
        let mut dot = [[_mm256_setzero_si256(); 4]; R];
        for (t, dot) in dot.iter_mut().enumerate() {
            let zp_term = cols8_zero_point_term::<UNIFORM>(zp, *a_sums.add(b * R + t));
            dot[0] = _mm256_sub_epi32(dot[0], zp_term);
        }
        for j in 0..4 {
            let v = _mm256_loadu_si256(q.add(j * 32) as *const __m256i);
            let lo = _mm256_and_si256(v, nibble);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
            for (t, dot) in dot.iter_mut().enumerate() {
                // The block's activations in kernel order: even elements, then odd ones.
                let a = acts.add((b * R + t) * BLOCK);
                let even = _mm256_set1_epi32((a.add(4 * j) as *const i32).read_unaligned());
                let odd = (a.add(BLOCK_BYTES + 4 * j) as *const i32).read_unaligned();
                let c = _mm256_dpbusd_epi32(dot[j % chains], lo, even);
                dot[j % chains] = _mm256_dpbusd_epi32(c, hi, _mm256_set1_epi32(odd));
            }
        }
        let d = _mm256_loadu_ps(scales.add(b * GROUP_ROWS));
        for t in 0..R {
            // Integer sums: exact in any order.
            let [c0, c1, c2, c3] = dot[t];
            let dot = if chains == 2 {
                _mm256_add_epi32(c0, c1)
            } else {
                _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3))
            };
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(*a_scales.add(b * R + t)));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc[t]);
        }
    }
    acc
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn matmul_vnni_cols8(x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
    drive_cols8!(x, m, w, out, tile_vnni_cols8, 8, [1, 2, 3, 4, 5, 6, 7])
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn matmul_vnni(x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
    let acts = quantize_avx2(x, m, w.k());
    let aq = step_layout(&acts.q, m, w.k(), QUAD);
    let terms = step_terms_layout(
        &aq,
        &acts.scale,
        w.k() / BLOCK,
        QUAD,
        w.uniform_zero_point(),
    );
    if w.uniform_zero_point().is_some() {
        drive_rows!(w, &aq, &terms, m, tile_vnni[true], 2, out);
    } else {
        drive_rows!(w, &aq, &terms, m, tile_vnni[false], 2, out);
    }
}
