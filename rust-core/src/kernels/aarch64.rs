//! aarch64 kernels: plain NEON (`smull`/`smlal` + `saddlp`) and dotprod (`sdot`).
//!
//! NEON has no u8 x i8 multiply, but it does have cheap signed ones, so here each nibble
//! is turned into a signed weight `q - zp` (range -15..15) right after unpacking (one
//! `sub` per 16 weights). That folds the zero point in exactly: no activation-sum
//! correction is needed.
//!
//! As on x86, per-block integer dots stay in lanes and are FMA'd as f32 with the block
//! scale into a lane accumulator (one horizontal add per output), and up to 4 activation
//! rows share each unpacked weight block.

use std::arch::aarch64::*;
use std::arch::asm;

use super::{
    act_scale, check_matmul_args, quantize_acts, Q4Kernel, Q4Matrix, QuantizedActs, BLOCK,
    BLOCK_BYTES,
};

/// Activation rows processed together per weight row.
const MR: usize = 4;

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
        // SAFETY: neon present (checked above); shapes checked above.
        unsafe {
            let acts = quantize_neon(x, m, w.k());
            drive_rows(
                w,
                &acts,
                m,
                out,
                |qs, scales, zps, nb, rows| tile_neon::<MR>(qs, scales, zps, nb, rows),
                |qs, scales, zps, nb, row| tile_neon::<1>(qs, scales, zps, nb, [row])[0],
            );
        }
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
        // SAFETY: neon + dotprod present (checked above); shapes checked above.
        unsafe {
            let acts = quantize_neon(x, m, w.k());
            drive_rows(
                w,
                &acts,
                m,
                out,
                |qs, scales, zps, nb, rows| tile_dotprod::<MR>(qs, scales, zps, nb, rows),
                |qs, scales, zps, nb, row| tile_dotprod::<1>(qs, scales, zps, nb, [row])[0],
            );
        }
    }
}

/// Calls `tile4` on groups of `MR` activation rows and `tile1` on the rest, writes
/// `dot * a_scale`. (`#[inline(always)]` so the tile calls are direct calls from the
/// caller's monomorphized closures.)
#[inline(always)]
unsafe fn drive_rows(
    w: &Q4Matrix,
    acts: &QuantizedActs,
    m: usize,
    out: &mut [f32],
    tile4: impl Fn(*const u8, *const f32, *const u8, usize, [*const i8; MR]) -> [f32; MR],
    tile1: impl Fn(*const u8, *const f32, *const u8, usize, *const i8) -> f32,
) {
    let (n_total, k, nb) = (w.n(), w.k(), w.blocks_per_row());
    for n in 0..n_total {
        let qs = w.row_qs(n).as_ptr();
        let scales = w.row_scales(n).as_ptr();
        let zps = w.row_zps(n).as_ptr();
        let mut r = 0;
        while r + MR <= m {
            let rows: [*const i8; MR] = core::array::from_fn(|t| acts.q[(r + t) * k..].as_ptr());
            let dots = tile4(qs, scales, zps, nb, rows);
            for t in 0..MR {
                out[(r + t) * n_total + n] = dots[t] * acts.scale[r + t];
            }
            r += MR;
        }
        while r < m {
            out[r * n_total + n] =
                tile1(qs, scales, zps, nb, acts.q[r * k..].as_ptr()) * acts.scale[r];
            r += 1;
        }
    }
}

/// NEON version of [`super::quantize_row_scalar`], bit-identical to it: same scale
/// formula, and `fcvtns` rounds to nearest-even like `round_ties_even`.
#[target_feature(enable = "neon")]
fn quantize_row_neon(x: &[f32], q: &mut [i8], sums: &mut [i32]) -> f32 {
    let k = x.len();
    assert!(k % BLOCK == 0 && q.len() == k && sums.len() == k / BLOCK);
    let xp = x.as_ptr();
    let qp = q.as_mut_ptr();
    // SAFETY: all offsets below are < k, bounds asserted above.
    unsafe {
        let mut vmax = vdupq_n_f32(0.0);
        let mut i = 0;
        while i < k {
            vmax = vmaxq_f32(vmax, vabsq_f32(vld1q_f32(xp.add(i))));
            i += 4;
        }
        let (scale, inv) = act_scale(vmaxvq_f32(vmax));
        let vinv = vdupq_n_f32(inv);
        for (b, sum) in sums.iter_mut().enumerate() {
            let p = xp.add(b * BLOCK);
            let mut s = vdupq_n_s32(0);
            for h in 0..2 {
                // 16 values -> 16 int8 with saturating narrows (which never clip here).
                let c0 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p.add(h * 16)), vinv));
                let c1 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p.add(h * 16 + 4)), vinv));
                let c2 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p.add(h * 16 + 8)), vinv));
                let c3 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p.add(h * 16 + 12)), vinv));
                s = vaddq_s32(s, vaddq_s32(vaddq_s32(c0, c1), vaddq_s32(c2, c3)));
                let lo = vcombine_s16(vqmovn_s32(c0), vqmovn_s32(c1));
                let hi = vcombine_s16(vqmovn_s32(c2), vqmovn_s32(c3));
                vst1q_s8(
                    qp.add(b * BLOCK + h * 16),
                    vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)),
                );
            }
            *sum = vaddvq_s32(s);
        }
        scale
    }
}

fn quantize_neon(x: &[f32], m: usize, k: usize) -> QuantizedActs {
    // SAFETY: only called from the kernels' entry points, after feature detection.
    quantize_acts(x, m, k, |x, q, s| unsafe { quantize_row_neon(x, q, s) })
}

/// Unpacks one block into signed weights `(q - zp)` for elements 0..16 and 16..32.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn unpack_block(qs: *const u8, zp: u8) -> (int8x16_t, int8x16_t) {
    let v = vld1q_u8(qs);
    let z = vdupq_n_s8(zp as i8);
    // Repacked layout: low nibbles = elements 0..16, high nibbles = 16..32, in order.
    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), z);
    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), z);
    (lo, hi)
}

/// `sum_b scale_b * sum_i (q[b,i] - zp_b) * a_t[b,i]` for R activation rows, plain NEON.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn tile_neon<const R: usize>(
    qs: *const u8,
    scales: *const f32,
    zps: *const u8,
    nb: usize,
    acts: [*const i8; R],
) -> [f32; R] {
    // Two accumulator sets (even / odd blocks): hides the FMA latency when m = 1.
    let mut acc0 = [vdupq_n_f32(0.0); R];
    let mut acc1 = [vdupq_n_f32(0.0); R];
    macro_rules! block {
        ($b:expr, $acc:ident) => {{
            let b = $b;
            let (wlo, whi) = unpack_block(qs.add(b * BLOCK_BYTES), *zps.add(b));
            let d = vdupq_n_f32(*scales.add(b));
            for t in 0..R {
                let a0 = vld1q_s8(acts[t].add(b * BLOCK));
                let a1 = vld1q_s8(acts[t].add(b * BLOCK + 16));
                // smull/smlal(2): i8 x i8 -> i16 lanes, 4 products accumulated per i16 lane:
                // |sum| <= 4 * 15 * 127 = 7620, no overflow. Then saddlp (vpaddlq) widens
                // adjacent pairs to i32, giving the block's dot spread over 4 i32 lanes.
                let mut p = vmull_s8(vget_low_s8(wlo), vget_low_s8(a0));
                p = vmlal_high_s8(p, wlo, a0);
                p = vmlal_s8(p, vget_low_s8(whi), vget_low_s8(a1));
                p = vmlal_high_s8(p, whi, a1);
                let s = vpaddlq_s16(p);
                $acc[t] = vfmaq_f32($acc[t], vcvtq_f32_s32(s), d);
            }
        }};
    }
    let mut b = 0;
    while b + 2 <= nb {
        block!(b, acc0);
        block!(b + 1, acc1);
        b += 2;
    }
    if b < nb {
        block!(b, acc0);
    }
    let mut res = [0f32; R];
    for t in 0..R {
        res[t] = vaddvq_f32(vaddq_f32(acc0[t], acc1[t]));
    }
    res
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
unsafe fn tile_dotprod<const R: usize>(
    qs: *const u8,
    scales: *const f32,
    zps: *const u8,
    nb: usize,
    acts: [*const i8; R],
) -> [f32; R] {
    // Two accumulator sets (even / odd blocks): hides the FMA latency when m = 1.
    let mut acc0 = [vdupq_n_f32(0.0); R];
    let mut acc1 = [vdupq_n_f32(0.0); R];
    macro_rules! block {
        ($b:expr, $acc:ident) => {{
            let b = $b;
            let (wlo, whi) = unpack_block(qs.add(b * BLOCK_BYTES), *zps.add(b));
            let d = vdupq_n_f32(*scales.add(b));
            for t in 0..R {
                let a0 = vld1q_s8(acts[t].add(b * BLOCK));
                let a1 = vld1q_s8(acts[t].add(b * BLOCK + 16));
                let s = sdot(sdot(vdupq_n_s32(0), wlo, a0), whi, a1);
                $acc[t] = vfmaq_f32($acc[t], vcvtq_f32_s32(s), d);
            }
        }};
    }
    let mut b = 0;
    while b + 2 <= nb {
        block!(b, acc0);
        block!(b + 1, acc1);
        b += 2;
    }
    if b < nb {
        block!(b, acc0);
    }
    let mut res = [0f32; R];
    for t in 0..R {
        res[t] = vaddvq_f32(vaddq_f32(acc0[t], acc1[t]));
    }
    res
}
