//! aarch64 kernels: plain NEON (`smull`/`smlal` + `saddlp`) and dotprod (`sdot`).
//!
//! NEON has no u8 x i8 multiply, but it does have cheap signed ones, so here each nibble
//! is turned into a signed weight `q - zp` (range -15..15) right after unpacking (one
//! `sub` per 16 weights). That folds the zero point in exactly: no activation-sum
//! correction is needed.
//!
//! Each block's integer dot comes out in 4 i32 lanes; four blocks' dots are folded by
//! pairwise adds into one vector (block j in lane j) and FMA'd as f32 with the products of
//! the four blocks' weight and activation scales into a lane accumulator (one horizontal add
//! per output), and rows are tiled as described in `drive_rows!` (mod.rs): 4 activation rows
//! share each unpacked weight block when m > 1, 4 weight rows share each activation load
//! when m = 1.

use std::arch::aarch64::*;
use std::arch::asm;

use super::{
    act_scale, check_matmul_args, quantize_acts, scalar_unless_row_blocks, Q4Kernel, Q4Matrix,
    Q4View, QuantizedActs, BLOCK, BLOCK_BYTES, MR, NR,
};

pub(crate) fn neon_supported() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

pub(crate) fn dotprod_supported() -> bool {
    neon_supported() && std::arch::is_aarch64_feature_detected!("dotprod")
}

#[derive(Debug)]
pub(crate) struct Neon;
pub(crate) static NEON: Neon = Neon;

#[derive(Debug)]
pub(crate) struct DotProd;
pub(crate) static DOTPROD: DotProd = DotProd;

impl Q4Kernel for Neon {
    fn name(&self) -> &'static str {
        "neon"
    }

    fn matmul(&self, x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
        check_matmul_args(x, m, w, out);
        assert!(neon_supported(), "neon kernel used on a CPU without neon");
        if scalar_unless_row_blocks(x, m, w, out) {
            return;
        }
        // SAFETY: neon present (checked above); shapes checked above.
        unsafe { matmul_neon(x, m, w, out) }
    }
}

impl Q4Kernel for DotProd {
    fn name(&self) -> &'static str {
        "dotprod"
    }

    fn matmul(&self, x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
        check_matmul_args(x, m, w, out);
        assert!(
            dotprod_supported(),
            "dotprod kernel used on a CPU without dotprod"
        );
        if scalar_unless_row_blocks(x, m, w, out) {
            return;
        }
        // SAFETY: neon + dotprod present (checked above); shapes checked above.
        unsafe { matmul_dotprod(x, m, w, out) }
    }
}

#[target_feature(enable = "neon")]
unsafe fn matmul_neon(x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
    let acts = quantize_neon(x, m, w.k());
    drive_rows!(w, &acts.q, &acts.scale, m, tile_neon[], 1, out);
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn matmul_dotprod(x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
    let acts = quantize_neon(x, m, w.k());
    drive_rows!(w, &acts.q, &acts.scale, m, tile_dotprod[], 1, out);
}

/// NEON version of [`super::quantize_row_scalar`], bit-identical to it: same scale
/// formula, and `fcvtns` rounds to nearest-even like `round_ties_even`; each block written
/// in the kernels' order.
#[target_feature(enable = "neon")]
fn quantize_row_neon(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    let k = x.len();
    assert!(k.is_multiple_of(BLOCK) && q.len() == k && scales.len() == k / BLOCK);
    let xp = x.as_ptr();
    let qp = q.as_mut_ptr();
    // SAFETY: all offsets below are < k, bounds asserted above.
    unsafe {
        for (b, scale) in scales.iter_mut().enumerate() {
            let p = xp.add(b * BLOCK);
            let mut xs = [vdupq_n_f32(0.0); 8];
            let mut vmax = vdupq_n_f32(0.0);
            for (i, v) in xs.iter_mut().enumerate() {
                *v = vld1q_f32(p.add(4 * i));
                vmax = vmaxq_f32(vmax, vabsq_f32(*v));
            }
            let inv;
            (*scale, inv) = act_scale(vmaxvq_f32(vmax));
            let vinv = vdupq_n_f32(inv);
            // 32 values -> 32 int8 with saturating narrows (which never clip here).
            let mut halves = [vdupq_n_s8(0); 2];
            for (h, half) in halves.iter_mut().enumerate() {
                let c: [int32x4_t; 4] = [
                    vcvtnq_s32_f32(vmulq_f32(xs[4 * h], vinv)),
                    vcvtnq_s32_f32(vmulq_f32(xs[4 * h + 1], vinv)),
                    vcvtnq_s32_f32(vmulq_f32(xs[4 * h + 2], vinv)),
                    vcvtnq_s32_f32(vmulq_f32(xs[4 * h + 3], vinv)),
                ];
                let lo = vcombine_s16(vqmovn_s32(c[0]), vqmovn_s32(c[1]));
                let hi = vcombine_s16(vqmovn_s32(c[2]), vqmovn_s32(c[3]));
                *half = vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
            }
            // The kernels' order: `uzp1` takes the even elements, `uzp2` the odd ones.
            vst1q_s8(qp.add(b * BLOCK), vuzp1q_s8(halves[0], halves[1]));
            vst1q_s8(
                qp.add(b * BLOCK + BLOCK_BYTES),
                vuzp2q_s8(halves[0], halves[1]),
            );
        }
    }
}

pub(super) fn quantize_neon(x: &[f32], m: usize, k: usize) -> QuantizedActs {
    // SAFETY: only called from the kernels' entry points, after feature detection.
    quantize_acts(x, m, k, |x, q, s| unsafe { quantize_row_neon(x, q, s) })
}

/// Unpacks one block into signed weights `(q - zp)` for elements 0..16 and 16..32.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn unpack_block(qs: *const u8, zp: u8) -> (int8x16_t, int8x16_t) {
    let v = vld1q_u8(qs);
    let z = vdupq_n_s8(zp as i8);
    // Low nibbles = the block's even elements, high nibbles = its odd ones: positions
    // 0..16 and 16..32 of the activations in the kernels' order (`kernel_order`).
    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), z);
    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), z);
    (lo, hi)
}

/// Horizontal sums of an `R x NRR` accumulator tile, four accumulators at a time through one
/// `faddp` tree; a group of fewer than four is padded with zeros, so every accumulator is
/// summed in the same order whatever the tile's shape (see the x86 `reduce`: a row's outputs
/// must not depend on the rows computed with it).
#[target_feature(enable = "neon")]
#[inline]
fn reduce<const R: usize, const NRR: usize>(acc: [[float32x4_t; R]; NRR]) -> [[f32; R]; NRR] {
    let mut res = [[0f32; R]; NRR];
    // Accumulator `i` in weight-row-major order, zero past the end.
    let a = |i: usize| {
        if i < R * NRR {
            acc[i / R][i % R]
        } else {
            vdupq_n_f32(0.0)
        }
    };
    for i in (0..R * NRR).step_by(4) {
        let s = vpaddq_f32(vpaddq_f32(a(i), a(i + 1)), vpaddq_f32(a(i + 2), a(i + 3)));
        let mut tmp = [0f32; 4];
        // SAFETY: tmp has 4 floats.
        unsafe { vst1q_f32(tmp.as_mut_ptr(), s) };
        for (j, v) in tmp.into_iter().enumerate().take(R * NRR - i) {
            res[(i + j) / R][(i + j) % R] = v;
        }
    }
    res
}

/// Blocks whose integer dots are combined before the float work (one per f32 lane).
const QUAD: usize = 4;

/// Four consecutive f32 from `p`, zeros past the first `n` (a short last group of blocks
/// must not read past its row).
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_quad(p: *const f32, n: usize) -> float32x4_t {
    if n == QUAD {
        vld1q_f32(p)
    } else {
        let mut v = [0f32; QUAD];
        for (j, v) in v.iter_mut().enumerate().take(n) {
            *v = *p.add(j);
        }
        vld1q_f32(v.as_ptr())
    }
}

/// Tile loop shared by both NEON kernels; `$dot(wlo, whi, a0, a1)` is the block's integer
/// dot product as 4 i32 lanes. Four blocks at a time: their dots are folded by two rounds of
/// pairwise adds (`addp`) into one vector, block `j` in lane `j`, so the float work (convert,
/// scale product, FMA) is done once per 4 blocks, with the 4 blocks' weight and activation
/// scales read as vectors.
macro_rules! neon_tile {
    ($w:expr, $ns:expr, $acts:expr, $a_scales:expr, $R:ident, $NRR:ident, $dot:expr) => {{
        let (w, ns, acts, a_scales): (&Q4View, [usize; $NRR], [*const i8; $R], [*const f32; $R]) =
            ($w, $ns, $acts, $a_scales);
        let nb = w.blocks_per_row();
        let qs: [*const u8; $NRR] = core::array::from_fn(|i| w.row_qs(ns[i]).as_ptr());
        let scales: [*const f32; $NRR] = core::array::from_fn(|i| w.row_scales(ns[i]).as_ptr());
        let zps: [*const u8; $NRR] = core::array::from_fn(|i| w.row_zps(ns[i]).as_ptr());
        let mut acc = [[vdupq_n_f32(0.0); $R]; $NRR];
        for b0 in (0..nb).step_by(QUAD) {
            let blocks = (nb - b0).min(QUAD);
            let mut sa = [vdupq_n_f32(0.0); $R];
            for t in 0..$R {
                sa[t] = load_quad(a_scales[t].add(b0), blocks);
            }
            for i in 0..$NRR {
                let d = load_quad(scales[i].add(b0), blocks);
                let mut dots = [[vdupq_n_s32(0); QUAD]; $R];
                for j in 0..blocks {
                    let b = b0 + j;
                    let (wlo, whi) = unpack_block(qs[i].add(b * BLOCK_BYTES), *zps[i].add(b));
                    for t in 0..$R {
                        let a0 = vld1q_s8(acts[t].add(b * BLOCK));
                        let a1 = vld1q_s8(acts[t].add(b * BLOCK + 16));
                        dots[t][j] = ($dot)(wlo, whi, a0, a1);
                    }
                }
                for t in 0..$R {
                    let [s0, s1, s2, s3] = dots[t];
                    // [s0, s1, s2, s3] summed over each one's 4 lanes: |dot| <= 32 * 15 * 127.
                    let s = vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3));
                    acc[i][t] = vfmaq_f32(acc[i][t], vcvtq_f32_s32(s), vmulq_f32(d, sa[t]));
                }
            }
        }
        reduce(acc)
    }};
}

/// `sum_b w_scale_b * a_scale_tb * sum_i (q[b,i] - zp_b) * a_t[b,i]` for R activation rows
/// x NRR weight rows, plain NEON.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn tile_neon<const R: usize, const NRR: usize>(
    w: &Q4View,
    ns: [usize; NRR],
    acts: [*const i8; R],
    a_scales: [*const f32; R],
) -> [[f32; R]; NRR] {
    neon_tile!(
        w,
        ns,
        acts,
        a_scales,
        R,
        NRR,
        |wlo: int8x16_t, whi: int8x16_t, a0: int8x16_t, a1: int8x16_t| {
            // smull/smlal(2): i8 x i8 -> i16 lanes, 4 products accumulated per i16 lane:
            // |sum| <= 4 * 15 * 127 = 7620, no overflow. Then saddlp (vpaddlq) widens
            // adjacent pairs to i32, giving the block's dot spread over 4 i32 lanes.
            let mut p = vmull_s8(vget_low_s8(wlo), vget_low_s8(a0));
            p = vmlal_high_s8(p, wlo, a0);
            p = vmlal_s8(p, vget_low_s8(whi), vget_low_s8(a1));
            p = vmlal_high_s8(p, whi, a1);
            vpaddlq_s16(p)
        }
    )
}

/// `sdot`: each i32 lane += dot of 4 i8 pairs. `vdotq_s32` is still unstable in
/// `std::arch` (feature `stdarch_neon_dotprod`), hence the one-instruction asm.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// Same as [`tile_neon`] with `sdot`: 2 instructions per block and row for the 32 MACs.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn tile_dotprod<const R: usize, const NRR: usize>(
    w: &Q4View,
    ns: [usize; NRR],
    acts: [*const i8; R],
    a_scales: [*const f32; R],
) -> [[f32; R]; NRR] {
    neon_tile!(w, ns, acts, a_scales, R, NRR, |wlo, whi, a0, a1| sdot(
        sdot(vdupq_n_s32(0), wlo, a0),
        whi,
        a1
    ))
}
