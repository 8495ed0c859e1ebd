//! Portable reference kernel. Defines the exact arithmetic the SIMD kernels reproduce:
//! integer block dot products with the zero point folded in exactly, f32 accumulation of
//! `blockdot * (w_scale * a_scale)` over blocks in order. Reads every [`Layout`].

use super::{
    check_matmul_args, quantize_acts, quantize_row_scalar, Layout, Q4Kernel, Q4Matrix, BLOCK,
    BLOCK_BYTES,
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
        if w.layout() != Layout::RowBlocks {
            // Not a layout the model gives this kernel: a copy in MatMulNBits' own.
            return self.matmul(x, m, &w.clone().into_layout(Layout::RowBlocks), out);
        }
        let w = w.view();
        let (n_total, k, nb) = (w.n(), w.k(), w.blocks_per_row());
        let acts = quantize_acts(x, m, k, quantize_row_scalar);
        for n in 0..n_total {
            let (qs, scales, zps) = (w.row_qs(n), w.row_scales(n), w.row_zps(n));
            for r in 0..m {
                let a = &acts.q[r * k..(r + 1) * k];
                let a_scales = &acts.scale[r * nb..(r + 1) * nb];
                let mut acc = 0f32;
                for (b, (qb, ab)) in qs
                    .chunks_exact(BLOCK_BYTES)
                    .zip(a.chunks_exact(BLOCK))
                    .enumerate()
                {
                    let zp = zps[b] as i32;
                    let (a_lo, a_hi) = ab.split_at(BLOCK_BYTES);
                    let mut dot = 0i32;
                    for ((&q, &lo), &hi) in qb.iter().zip(a_lo).zip(a_hi) {
                        dot += ((q & 0x0F) as i32 - zp) * lo as i32;
                        dot += ((q >> 4) as i32 - zp) * hi as i32;
                    }
                    acc += dot as f32 * (scales[b] * a_scales[b]);
                }
                out[r * n_total + n] = acc;
            }
        }
    }
}
