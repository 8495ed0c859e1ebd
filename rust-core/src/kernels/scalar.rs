//! Portable reference kernel. Defines the exact arithmetic the SIMD kernels reproduce:
//! integer block dot products with the zero point folded in exactly, f32 accumulation of
//! `blocksum * w_scale` over blocks in order, one final multiply by the activation scale.

use super::{
    check_matmul_args, quantize_acts, quantize_row_scalar, Q4Kernel, Q4Matrix, BLOCK, BLOCK_BYTES,
};

#[derive(Debug)]
pub(crate) struct Scalar;

pub(crate) static SCALAR: Scalar = Scalar;

impl Q4Kernel for Scalar {
    fn name(&self) -> &'static str {
        "scalar"
    }

    fn matmul(&self, x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
        check_matmul_args(x, m, w, out);
        let (n_total, k, nb) = (w.n(), w.k(), w.blocks_per_row());
        let acts = quantize_acts(x, m, k, quantize_row_scalar);
        for n in 0..n_total {
            let (qs, scales, zps) = (w.row_qs(n), w.row_scales(n), w.row_zps(n));
            for r in 0..m {
                let a = &acts.q[r * k..(r + 1) * k];
                let sums = &acts.sums[r * nb..(r + 1) * nb];
                let mut acc = 0f32;
                for b in 0..nb {
                    let qb = &qs[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
                    let ab = &a[b * BLOCK..(b + 1) * BLOCK];
                    let mut dot = 0i32;
                    for i in 0..BLOCK_BYTES {
                        dot += (qb[i] & 0x0F) as i32 * ab[i] as i32;
                        dot += (qb[i] >> 4) as i32 * ab[i + BLOCK_BYTES] as i32;
                    }
                    // sum((q - zp) * a) = sum(q * a) - zp * sum(a), exact in i32.
                    let blocksum = dot - zps[b] as i32 * sums[b];
                    acc += blocksum as f32 * scales[b];
                }
                out[r * n_total + n] = acc * acts.scale[r];
            }
        }
    }
}
