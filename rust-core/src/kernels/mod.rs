//! W4A8 quantized matmul kernels: 4-bit weights (ONNX `com.microsoft::MatMulNBits`,
//! bits = 4, block_size = 32) times int8-quantized activations.
//!
//! # Semantics
//!
//! Weights `W` are `[N, K]` (N output features, K inputs, K a multiple of 32), stored in
//! blocks of 32 consecutive k with one f32 scale and one 4-bit zero point per block:
//! `w[n, k] = (q[n, k] - zp[n, k / 32]) * scale[n, k / 32]`, and `Y[m, n] = sum_k X[m, k] * w[n, k]`.
//!
//! The kernels quantize each activation row once per call to int8, symmetric, with one
//! scale per block of 32 (the weights' blocks): `s = max|x_b| / 127`,
//! `a = round_ties_even(x * (127 / max|x_b|))` (all kernels use this exact formula, so every
//! kernel sees bit-identical int8 activations). A scale per block rather than per row keeps
//! one large activation (RMSNorm outputs have a few) from flattening the rest of its row to
//! a handful of levels: on the bundled model it raised top-5 agreement with the float model
//! from 92.6% to 96.7% of positions. Per block the kernels compute an exact integer dot
//! product `sum((q - zp) * a)` (int4 x int8 -> int32) and accumulate
//! `blockdot * (w_scale[n, blk] * a_scale[m, blk])` in f32. The only differences between
//! kernels are float summation order (see the tests).
//!
//! # Kernels
//!
//! * `scalar`: portable reference, always available.
//! * `avx2` (x86_64, avx2 + fma): `vpmaddubsw` u8 x i8 (nibbles stay unsigned 0..15), on
//!   weights repacked into its own [`Layout::Cols8`].
//! * `avx512vnni` (x86_64, avx512f/bw/vl + avx512vnni): `vpdpbusd` of raw nibbles, four
//!   blocks per 64-byte weight load.
//! * `neon` (aarch64): nibbles minus zero point as signed i8, `smull`/`smlal` + `saddlp`.
//! * `dotprod` (aarch64 + dotprod): same signed nibbles, `sdot`.
//!
//! Use [`select`] to get the best kernel for the running CPU (runtime detection with
//! `is_x86_feature_detected!` / `is_aarch64_feature_detected!`; override with the env var
//! `NEXTWORD_KERNEL`), or [`by_name`] / [`available`] for tests and benchmarks.
//!
//! All kernels are single-threaded; callers that want parallelism can split N.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Activation rows sharing one unpacked weight block in the SIMD kernels (m > 1).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
const MR: usize = 4;
/// Weight rows processed against one activation row in the SIMD kernels (m = 1).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
const NR: usize = 4;

/// Loop nest shared by the SIMD kernels (a macro so that the `tile` calls are inlined into
/// the caller's `#[target_feature]` function).
///
/// `drive_rows!(w, aq, a_terms, m, tile [extra const generics], WR, out)`:
/// `tile::<R, NRR, extra..>(w, [weight rows; NRR], [activation row pointers; R],
/// [activation term row pointers; R])` returns the `R x NRR` dot products, which go to
/// `out[r * n + j]`. `aq` holds the `m` int8 activation rows as the kernel reads them
/// (`aq.len() / m` bytes each: `k`, or more for a padded layout); `a_terms` whatever per-block terms the kernel needs with them (block
/// scales, or for VNNI scales and lane sums as 32-bit words), `a_terms.len() / m` per row.
///
/// For each group of `NR` weight rows:
/// * activation rows in groups of `MR` go through `tile::<MR, WR>` for each `WR` weight
///   rows: the weight blocks are unpacked once for `MR` rows, each activation load serves
///   `WR` weight rows, and there are `MR x WR` independent accumulator chains (`WR` is the
///   kernel's choice: 2 where 32 vector registers hold the tile, else 1);
/// * two or three remaining activation rows go through `tile::<2 or 3, WR>` the same way;
/// * a single remaining row (m = 1, or m = 4k + 1) goes through `tile::<1, NR>`: `NR`
///   independent accumulator chains hide the FMA latency, each activation load serves `NR`
///   weight rows, and the `NR` horizontal sums are combined.
macro_rules! drive_rows {
    ($w:expr, $aq:expr, $a_terms:expr, $m:expr, $tile:ident [$($extra:expr),*], $WR:expr, $out:expr) => {{
        const WR: usize = $WR;
        const _: () = assert!(NR.is_multiple_of(WR));
        let view = $w.view();
        let (w, m, out): (&Q4View, usize, &mut [f32]) = (&view, $m, $out);
        let (aq, a_terms): (&[i8], &[_]) = (&$aq[..], &$a_terms[..]);
        let n_total = w.n();
        let act_stride = aq.len().checked_div(m).unwrap_or(0);
        let term_stride = a_terms.len().checked_div(m).unwrap_or(0);
        let row = |r: usize| aq[r * act_stride..].as_ptr();
        let term_row = |r: usize| a_terms[r * term_stride..].as_ptr();
        let mut n0 = 0;
        while n0 < n_total {
            let nr = if n0 + NR <= n_total { NR } else { 1 };
            let mut r0 = 0;
            // `R` activation rows share each unpacked weight block (the tree search's 5-7
            // row calls end in groups of 2-3), `$W` weight rows each activation load.
            macro_rules! row_group {
                ($R:expr, $W:expr) => {{
                    let rows: [_; $R] = core::array::from_fn(|t| row(r0 + t));
                    let terms: [_; $R] = core::array::from_fn(|t| term_row(r0 + t));
                    for j in (n0..n0 + nr).step_by($W) {
                        let dots = $tile::<$R, $W $(, $extra)*>(
                            w,
                            core::array::from_fn(|i| j + i),
                            rows,
                            terms,
                        );
                        for i in 0..$W {
                            for t in 0..$R {
                                out[(r0 + t) * n_total + j + i] = dots[i][t];
                            }
                        }
                    }
                }};
            }
            while r0 + MR <= m {
                if nr == NR {
                    row_group!(MR, WR);
                } else {
                    row_group!(MR, 1);
                }
                r0 += MR;
            }
            match (m - r0, nr == NR) {
                (0, _) => {}
                (1, true) => row_group!(1, NR),
                (1, false) => row_group!(1, 1),
                (2, true) => row_group!(2, WR),
                (2, false) => row_group!(2, 1),
                (_, true) => row_group!(3, WR),
                (_, false) => row_group!(3, 1),
            }
            n0 += nr;
        }
    }};
}

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Number of weights per quantization block (MatMulNBits `block_size`).
pub const BLOCK: usize = 32;
/// Bytes per packed block (32 nibbles).
const BLOCK_BYTES: usize = BLOCK / 2;
/// Implicit zero point when MatMulNBits has no `zero_points` input (2^(bits-1)).
const DEFAULT_ZERO_POINT: u8 = 8;

/// Names accepted by [`by_name`] and `NEXTWORD_KERNEL` (whether or not this CPU has them).
pub const KERNEL_NAMES: [&str; 5] = ["scalar", "avx2", "avx512vnni", "neon", "dotprod"];

/// Errors raised when building a [`Q4Matrix`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("empty weight matrix: n = {n}, k = {k}")]
    EmptyShape { n: usize, k: usize },
    #[error("k = {k} is not a multiple of the block size {BLOCK}")]
    KNotMultipleOfBlock { k: usize },
    #[error("weight matrix n = {n}, k = {k} is too large")]
    ShapeOverflow { n: usize, k: usize },
    #[error("`{buffer}` has {actual} elements, expected {expected}")]
    BufferSize {
        buffer: &'static str,
        expected: usize,
        actual: usize,
    },
}

/// Read-only elements a [`Q4Matrix`] borrows: a `Vec` it copied, or the model's own weight
/// tensor, so that loading a model does not hold the weights twice.
pub type Shared<T> = Arc<dyn AsRef<[T]> + Send + Sync>;

/// Rows of a [`Layout::Cols8`] group.
const GROUP_ROWS: usize = 8;

/// How a [`Q4Matrix`] orders its blocks. Every kernel reads [`Layout::RowBlocks`]; a kernel
/// may read another one faster ([`Q4Kernel::layout`]), into which a matrix that owns its
/// bytes is repacked once when the model is loaded ([`Q4Matrix::into_layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// MatMulNBits' own: row-major over `n`, then block, 16 bytes per block. Byte `i` holds
    /// element `2i` in its low nibble and element `2i + 1` in its high nibble. The kernels
    /// split a 16-byte load into low nibbles (the block's even elements) and high nibbles
    /// (odd elements); the activations are put in that order once per call
    /// (`kernel_order`), so no weight shuffle is needed. Scales and zero points one per
    /// block, row-major. A matrix in this layout can borrow the model's own tensor.
    RowBlocks,
    /// Rows in groups of 8, interleaved per block: for each group and block, 4 chunks of 32
    /// bytes, chunk `j` holding bytes `4j..4j + 4` of the block of each of the group's 8 rows,
    /// in row order; scales and zero points `[group][block][row of the group]`. The last
    /// group is padded with zero rows. One 32-byte load gives 8 output columns 8 weights
    /// each, so a kernel's i32 lanes can be output columns: no horizontal sums, and one float
    /// multiply-add per block for 8 outputs (the x86 AVX2 kernel's layout).
    Cols8,
}

/// A 4-bit weight matrix `[N, K]` in one of the [`Layout`]s.
///
/// * `qs`: 16 bytes per block (see [`Layout`] for their order).
/// * `scales`: one f32 per block.
/// * `zps`: unpacked zero point (0..15) per block, one byte.
#[derive(Clone)]
pub struct Q4Matrix {
    n: usize,
    k: usize,
    nb: usize,
    layout: Layout,
    qs: Shared<u8>,
    scales: Shared<f32>,
    zps: Vec<u8>,
    /// The zero point of every block when they are all equal (always, for symmetric exports
    /// without a `zero_points` input): kernels then fold it into per-call activation terms.
    uniform_zp: Option<u8>,
}

impl fmt::Debug for Q4Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Q4Matrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

fn check_len(buffer: &'static str, expected: usize, actual: usize) -> Result<(), KernelError> {
    if expected == actual {
        Ok(())
    } else {
        Err(KernelError::BufferSize {
            buffer,
            expected,
            actual,
        })
    }
}

/// Checks the sizes of MatMulNBits initializers for a `[n, k]` matrix; its blocks per row,
/// unpacked zero points (one per block, row-major) and their common value if they have one.
fn unpacked_params(
    n: usize,
    k: usize,
    b_len: usize,
    scales_len: usize,
    zero_points: Option<&[u8]>,
) -> Result<(usize, Vec<u8>, Option<u8>), KernelError> {
    if n == 0 || k == 0 {
        return Err(KernelError::EmptyShape { n, k });
    }
    if !k.is_multiple_of(BLOCK) {
        return Err(KernelError::KNotMultipleOfBlock { k });
    }
    let nb = k / BLOCK;
    let overflow = KernelError::ShapeOverflow { n, k };
    let blocks = n.checked_mul(nb).ok_or(overflow.clone())?;
    let qbytes = blocks.checked_mul(BLOCK_BYTES).ok_or(overflow.clone())?;
    // Keep every derived size (incl. `n * k` f32 for `dequantize`) addressable.
    n.checked_mul(k)
        .and_then(|nk| nk.checked_mul(4))
        .ok_or(overflow)?;
    check_len("b", qbytes, b_len)?;
    check_len("scales", blocks, scales_len)?;
    let zp_row = nb.div_ceil(2);
    if let Some(zp) = zero_points {
        check_len("zero_points", n * zp_row, zp.len())?;
    }
    let zps: Vec<u8> = match zero_points {
        None => vec![DEFAULT_ZERO_POINT; blocks],
        Some(zp) => (0..blocks)
            .map(|i| {
                let (row, blk) = (i / nb, i % nb);
                let byte = zp[row * zp_row + blk / 2];
                if blk % 2 == 0 {
                    byte & 0x0F
                } else {
                    byte >> 4
                }
            })
            .collect(),
    };
    let uniform_zp = zps.iter().all(|&z| z == zps[0]).then_some(zps[0]);
    Ok((nb, zps, uniform_zp))
}

impl Q4Matrix {
    /// Builds from the MatMulNBits initializers (bits = 4, block_size = 32), copying them.
    ///
    /// * `b`: u8 `[n, k/32, 16]`; element `2i` of a block is the low nibble of byte `i`,
    ///   element `2i+1` the high nibble.
    /// * `scales`: f32 `[n * k/32]`.
    /// * `zero_points`: optional u8 `[n, ceil((k/32) / 2)]`, 4-bit packed, low nibble
    ///   first; `None` means 8.
    pub fn from_matmul_nbits(
        n: usize,
        k: usize,
        b: &[u8],
        scales: &[f32],
        zero_points: Option<&[u8]>,
    ) -> Result<Q4Matrix, KernelError> {
        Q4Matrix::from_shared(
            n,
            k,
            Arc::new(b.to_vec()),
            Arc::new(scales.to_vec()),
            zero_points,
        )
    }

    /// [`Q4Matrix::from_matmul_nbits`] on weights and scales it keeps a reference to.
    pub fn from_shared(
        n: usize,
        k: usize,
        b: Shared<u8>,
        scales: Shared<f32>,
        zero_points: Option<&[u8]>,
    ) -> Result<Q4Matrix, KernelError> {
        let (nb, zps, uniform_zp) = unpacked_params(
            n,
            k,
            (*b).as_ref().len(),
            (*scales).as_ref().len(),
            zero_points,
        )?;
        Ok(Q4Matrix {
            n,
            k,
            nb,
            layout: Layout::RowBlocks,
            qs: b,
            scales,
            zps,
            uniform_zp,
        })
    }

    /// Number of output features (rows of W).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of inputs (columns of W).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Dequantized weights, `[N, K]` row-major (for references and tests).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.n * self.k];
        for (row, out) in w.chunks_exact_mut(self.k).enumerate() {
            self.dequantize_row_into(row, out);
        }
        w
    }

    /// Row `row` of the weights, dequantized into `out` (`K` floats; an embedding lookup).
    ///
    /// Panics if `row >= N` or `out.len() != K`.
    pub fn dequantize_row_into(&self, row: usize, out: &mut [f32]) {
        assert!(
            row < self.n && out.len() == self.k,
            "dequantize_row_into: bad row or length"
        );
        let view = self.view();
        for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
            let (s, z) = (view.scale(row, b), f32::from(view.zp(row, b)));
            for (&q, pair) in view.block_qs(row, b).iter().zip(out.chunks_exact_mut(2)) {
                pair[0] = (f32::from(q & 0x0F) - z) * s;
                pair[1] = (f32::from(q >> 4) - z) * s;
            }
        }
    }

    #[inline]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn uniform_zero_point(&self) -> Option<u8> {
        self.uniform_zp
    }

    /// How the blocks are ordered.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The same matrix in `layout` (itself if already so). Repacking copies the weights into
    /// new buffers and releases this matrix's own: no extra memory once done for a matrix
    /// that owned its bytes, a copy for one that borrows the model's tensor.
    pub fn into_layout(self, layout: Layout) -> Q4Matrix {
        if layout == self.layout {
            return self;
        }
        let rows = match layout {
            Layout::RowBlocks => self.n,
            Layout::Cols8 => self.n.div_ceil(GROUP_ROWS) * GROUP_ROWS,
        };
        let mut qs = vec![0u8; rows * self.nb * BLOCK_BYTES];
        let mut scales = vec![0f32; rows * self.nb];
        let mut zps = vec![0u8; rows * self.nb];
        {
            let view = self.view();
            each_block(
                self.n,
                self.nb,
                self.layout,
                layout,
                |(src, sp), (dst, dp)| {
                    for (s, d) in src.into_iter().zip(dst) {
                        qs[d..d + CHUNK].copy_from_slice(&view.qs[s..s + CHUNK]);
                    }
                    scales[dp] = view.scales[sp];
                    zps[dp] = view.zps[sp];
                },
            );
        }
        Q4Matrix {
            layout,
            qs: Arc::new(qs),
            scales: Arc::new(scales),
            zps,
            ..self
        }
    }

    /// Repacks MatMulNBits weights `b` of an `[n, k]` matrix into `layout` where they lie,
    /// through a copy in `scratch` (kept for the next matrix), for
    /// [`Q4Matrix::from_shared_in`]. `false`, `b` untouched, if `b` is not `n * k / 2` bytes
    /// or `layout` would pad rows (only whole groups repack in place).
    pub fn repack_in_place(
        n: usize,
        k: usize,
        b: &mut [u8],
        layout: Layout,
        scratch: &mut Vec<u8>,
    ) -> bool {
        let nb = k / BLOCK;
        let fits = k.is_multiple_of(BLOCK)
            && n.checked_mul(nb).and_then(|x| x.checked_mul(BLOCK_BYTES)) == Some(b.len());
        if !fits || (layout == Layout::Cols8 && !n.is_multiple_of(GROUP_ROWS)) {
            return false;
        }
        if layout != Layout::RowBlocks {
            scratch.clear();
            scratch.extend_from_slice(b);
            each_block(n, nb, Layout::RowBlocks, layout, |(src, _), (dst, _)| {
                for (s, d) in src.into_iter().zip(dst) {
                    b[d..d + CHUNK].copy_from_slice(&scratch[s..s + CHUNK]);
                }
            });
        }
        true
    }

    /// [`Q4Matrix::from_shared`] of weights already in `layout`
    /// ([`Q4Matrix::repack_in_place`]), their scales and zero points still in MatMulNBits'
    /// order (put in `layout` here).
    pub fn from_shared_in(
        n: usize,
        k: usize,
        b: Shared<u8>,
        layout: Layout,
        scales: &[f32],
        zero_points: Option<&[u8]>,
    ) -> Result<Q4Matrix, KernelError> {
        let b_len = (*b).as_ref().len();
        let (nb, zps, uniform_zp) = unpacked_params(n, k, b_len, scales.len(), zero_points)?;
        if layout == Layout::Cols8 && !n.is_multiple_of(GROUP_ROWS) {
            // In place, the groups would have needed padding rows.
            check_len(
                "b",
                n.div_ceil(GROUP_ROWS) * GROUP_ROWS * nb * BLOCK_BYTES,
                b_len,
            )?;
        }
        let mut laid_scales = vec![0f32; scales.len()];
        let mut laid_zps = vec![0u8; zps.len()];
        each_block(n, nb, Layout::RowBlocks, layout, |(_, sp), (_, dp)| {
            laid_scales[dp] = scales[sp];
            laid_zps[dp] = zps[sp];
        });
        Ok(Q4Matrix {
            n,
            k,
            nb,
            layout,
            qs: b,
            scales: Arc::new(laid_scales),
            zps: laid_zps,
            uniform_zp,
        })
    }

    /// The matrix's elements as plain slices, resolved once per kernel call: the kernels ask
    /// for rows thousands of times per call, too often for a dynamic call each.
    pub(crate) fn view(&self) -> Q4View<'_> {
        Q4View {
            n: self.n,
            k: self.k,
            nb: self.nb,
            layout: self.layout,
            qs: (*self.qs).as_ref(),
            scales: (*self.scales).as_ref(),
            zps: &self.zps,
        }
    }
}

/// Bytes of a block that stay together in every [`Layout`].
const CHUNK: usize = 4;

/// Where block `b` of row `row` lies in `layout`: the offsets in `qs` of its 4 chunks of 4
/// bytes (in order), and its index in `scales` and `zps`.
#[inline]
fn block_offsets(layout: Layout, nb: usize, row: usize, b: usize) -> ([usize; 4], usize) {
    match layout {
        Layout::RowBlocks => {
            let base = (row * nb + b) * BLOCK_BYTES;
            ([base, base + 4, base + 8, base + 12], row * nb + b)
        }
        Layout::Cols8 => {
            let (group, r) = (row / GROUP_ROWS, row % GROUP_ROWS);
            let chunk_bytes = GROUP_ROWS * CHUNK;
            let base = (group * nb + b) * GROUP_ROWS * BLOCK_BYTES + r * CHUNK;
            (
                [
                    base,
                    base + chunk_bytes,
                    base + 2 * chunk_bytes,
                    base + 3 * chunk_bytes,
                ],
                (group * nb + b) * GROUP_ROWS + r,
            )
        }
    }
}

/// Calls `f(from, to)` with the places ([`block_offsets`]) of each block of an `n`-row
/// matrix (`nb` blocks per row) in the layouts `from` and `to`.
fn each_block(
    n: usize,
    nb: usize,
    from: Layout,
    to: Layout,
    mut f: impl FnMut(([usize; 4], usize), ([usize; 4], usize)),
) {
    for row in 0..n {
        for b in 0..nb {
            f(
                block_offsets(from, nb, row, b),
                block_offsets(to, nb, row, b),
            );
        }
    }
}

/// A [`Q4Matrix`] as the kernels read it (see [`Q4Matrix::view`]).
#[derive(Clone, Copy)]
pub(crate) struct Q4View<'a> {
    n: usize,
    k: usize,
    nb: usize,
    layout: Layout,
    qs: &'a [u8],
    scales: &'a [f32],
    zps: &'a [u8],
}

impl<'a> Q4View<'a> {
    #[inline]
    pub(crate) fn n(&self) -> usize {
        self.n
    }
    #[inline]
    pub(crate) fn k(&self) -> usize {
        self.k
    }
    #[inline]
    pub(crate) fn blocks_per_row(&self) -> usize {
        self.nb
    }
    /// The 16 bytes of block `b` of row `row`, in any layout.
    #[inline]
    pub(crate) fn block_qs(&self, row: usize, b: usize) -> [u8; BLOCK_BYTES] {
        let mut out = [0u8; BLOCK_BYTES];
        let (chunks, _) = block_offsets(self.layout, self.nb, row, b);
        for (dst, src) in out.chunks_exact_mut(CHUNK).zip(chunks) {
            dst.copy_from_slice(&self.qs[src..src + CHUNK]);
        }
        out
    }
    #[inline]
    pub(crate) fn scale(&self, row: usize, b: usize) -> f32 {
        self.scales[block_offsets(self.layout, self.nb, row, b).1]
    }
    #[inline]
    pub(crate) fn zp(&self, row: usize, b: usize) -> u8 {
        self.zps[block_offsets(self.layout, self.nb, row, b).1]
    }

    // Whole rows, for the kernels that read [`Layout::RowBlocks`].
    #[inline]
    pub(crate) fn row_qs(&self, row: usize) -> &'a [u8] {
        debug_assert_eq!(self.layout, Layout::RowBlocks);
        &self.qs[row * self.nb * BLOCK_BYTES..(row + 1) * self.nb * BLOCK_BYTES]
    }
    #[inline]
    pub(crate) fn row_scales(&self, row: usize) -> &'a [f32] {
        debug_assert_eq!(self.layout, Layout::RowBlocks);
        &self.scales[row * self.nb..(row + 1) * self.nb]
    }
    #[inline]
    pub(crate) fn row_zps(&self, row: usize) -> &'a [u8] {
        debug_assert_eq!(self.layout, Layout::RowBlocks);
        &self.zps[row * self.nb..(row + 1) * self.nb]
    }

    /// Group `group` of a [`Layout::Cols8`] matrix: its weight bytes, scales and zero points.
    #[inline]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn group(&self, group: usize) -> (&'a [u8], &'a [f32], &'a [u8]) {
        debug_assert_eq!(self.layout, Layout::Cols8);
        let params = self.nb * GROUP_ROWS;
        let bytes = params * BLOCK_BYTES;
        (
            &self.qs[group * bytes..(group + 1) * bytes],
            &self.scales[group * params..(group + 1) * params],
            &self.zps[group * params..(group + 1) * params],
        )
    }
}

/// A W4A8 matmul implementation.
pub trait Q4Kernel: Send + Sync + fmt::Debug {
    fn name(&self) -> &'static str;
    /// The layout this kernel reads fastest (every kernel also reads
    /// [`Layout::RowBlocks`]; one given a matrix in another layout hands it to the scalar
    /// reference).
    fn layout(&self) -> Layout {
        Layout::RowBlocks
    }
    /// `x`: `[m, k]` row-major f32, `out`: `[m, n]` row-major; overwrites `out`.
    ///
    /// Panics if `x.len() != m * w.k()` or `out.len() != m * w.n()`.
    fn matmul(&self, x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]);
}

pub(crate) fn check_matmul_args(x: &[f32], m: usize, w: &Q4Matrix, out: &[f32]) {
    assert_eq!(
        Some(x.len()),
        m.checked_mul(w.k),
        "Q4Kernel::matmul: x has {} elements, expected m*k = {m}*{}",
        x.len(),
        w.k
    );
    assert_eq!(
        Some(out.len()),
        m.checked_mul(w.n),
        "Q4Kernel::matmul: out has {} elements, expected m*n = {m}*{}",
        out.len(),
        w.n
    );
}

/// For the kernels that read only [`Layout::RowBlocks`]: when `w` is in another layout,
/// computes `out` with the scalar reference (which reads every layout) and returns true.
/// The model gives each kernel its own layout, so this only serves direct callers.
#[cfg(target_arch = "aarch64")]
pub(crate) fn scalar_unless_row_blocks(x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) -> bool {
    if w.layout == Layout::RowBlocks {
        return false;
    }
    scalar::SCALAR.matmul(x, m, w, out);
    true
}

/// Activations quantized to int8, one scale per block of 32.
pub(crate) struct QuantizedActs {
    /// `[m, k]` int8, each block in the kernels' order ([`kernel_order`]).
    pub q: Vec<i8>,
    /// `[m, k / 32]` dequantization scales (`max|x_b| / 127`, 0 for an all-zero block).
    pub scale: Vec<f32>,
}

/// `(scale, inverse scale)` for a block with absolute maximum `amax`. Shared by every
/// quantizer so that they all produce bit-identical int8 blocks.
#[inline]
pub(crate) fn act_scale(amax: f32) -> (f32, f32) {
    let inv = 127.0 / amax;
    if inv.is_finite() && amax.is_finite() {
        (amax / 127.0, inv)
    } else {
        // All-zero (or denormal-tiny, or non-finite) block: quantize to zeros.
        (0.0, 0.0)
    }
}

/// Portable row quantizer: fills `q` (k values, each block in the kernels' order,
/// [`kernel_order`]) and `scales` (k/32 values).
pub(crate) fn quantize_row_scalar(x: &[f32], q: &mut [i8], scales: &mut [f32]) {
    for ((xb, qb), scale) in x
        .chunks_exact(BLOCK)
        .zip(q.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let inv;
        (*scale, inv) = act_scale(amax);
        for (e, &v) in xb.iter().enumerate() {
            // |v * inv| <= 127 (or NaN, for a non-finite input, which `as` makes 0).
            qb[kernel_order(e)] = round_ties_even_small(v * inv).clamp(-127.0, 127.0) as i8;
        }
    }
}

/// `v` rounded to the nearest integer, ties to even, for `|v| < 2^22` (NaN stays NaN):
/// adding 1.5 * 2^23 leaves no fraction bits and rounds in the default mode, nearest-even,
/// as `round_ties_even` and the SIMD converts (`cvtps2dq` / `fcvtns`) do, so all quantizers
/// agree bit for bit. Not `f32::round_ties_even` itself: on x86_64 without SSE4.1 it is a
/// libm call per element, which made the float-precision layers' second quantization pass
/// cost more than the SIMD one.
#[inline]
pub(crate) fn round_ties_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Where element `e` of a block goes in the kernels' order: even elements first, then odd
/// ones, the order of the weight nibbles (low nibbles, then high nibbles, of a block's bytes).
#[inline]
pub(crate) fn kernel_order(e: usize) -> usize {
    e / 2 + (e % 2) * BLOCK_BYTES
}

/// Quantizes all rows of `x` with `row_fn` (a scalar or SIMD row quantizer, which writes
/// each block in the kernels' order).
pub(crate) fn quantize_acts(
    x: &[f32],
    m: usize,
    k: usize,
    row_fn: impl Fn(&[f32], &mut [i8], &mut [f32]),
) -> QuantizedActs {
    let nb = k / BLOCK;
    let mut q = vec![0i8; m * k];
    let mut scale = vec![0f32; m * nb];
    for r in 0..m {
        row_fn(
            &x[r * k..(r + 1) * k],
            &mut q[r * k..(r + 1) * k],
            &mut scale[r * nb..(r + 1) * nb],
        );
    }
    QuantizedActs { q, scale }
}

/// `kernel.matmul` with float-level activation precision: a second pass on what the int8
/// quantization left out. With `x = s * a + r` (a the int8 activations, s their block
/// scales), `W x = W (s a) + W r`, and `r`'s own int8 rounding error is 1/254 of `r`'s
/// range, i.e. about 1/64,000 of `x`'s: like 16-bit activations, at twice the multiply-adds.
/// For the layers whose small errors change results most (the LM head, where near-equal
/// logits decide the ranking).
///
/// `x` and `r` go through the kernel as one batch of `2m` rows, so each weight block is
/// loaded and unpacked once for both; a row's result does not depend on the rows computed
/// with it, so this is exactly `W x + W r` computed apart.
pub fn matmul_two_pass(kernel: &dyn Q4Kernel, x: &[f32], m: usize, w: &Q4Matrix, out: &mut [f32]) {
    check_matmul_args(x, m, w, out);
    let mut rows = Vec::with_capacity(2 * x.len());
    rows.extend_from_slice(x);
    push_quantization_residuals(x, &mut rows);
    let mut both = vec![0f32; 2 * out.len()];
    kernel.matmul(&rows, 2 * m, w, &mut both);
    let (coarse, refinement) = both.split_at(out.len());
    for ((y, c), r) in out.iter_mut().zip(coarse).zip(refinement) {
        *y = c + r;
    }
}

/// Appends what int8 quantization leaves of a block, `x - s * a`: the scale and rounding of
/// [`quantize_row_scalar`], which every quantizer matches bit for bit, so this is what the
/// kernel's own quantization leaves; computed in the block's natural order, which the
/// compiler vectorizes (the kernels' order would be a gather). The absolute maximum is taken
/// on the values' bits (for non-negative floats their order is the numbers'), a reduction
/// the compiler vectorizes where it keeps `f32::max`'s order; a NaN, which the quantizers
/// skip, leaves the block as its own residual (the first pass's output is meaningless then).
#[inline(always)]
fn push_quantization_residual(x: &[f32; BLOCK], out: &mut Vec<f32>) {
    let amax = x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF));
    let (scale, inv) = act_scale(f32::from_bits(amax));
    out.extend(x.iter().map(|&v| {
        let a = round_ties_even_small(v * inv).clamp(-127.0, 127.0);
        // A NaN is quantized to 0 (`as i8`).
        let a = if a.is_nan() { 0.0 } else { a };
        v - a * scale
    }));
}

/// [`push_quantization_residual`] for every block of `x`, vectorized 8 lanes wide where the
/// CPU has AVX2 (Rust never fuses the multiply and subtract into an FMA: same results).
fn push_quantization_residuals(x: &[f32], out: &mut Vec<f32>) {
    #[inline(always)]
    fn each_block(x: &[f32], out: &mut Vec<f32>) {
        for block in x.chunks_exact(BLOCK) {
            push_quantization_residual(block.try_into().expect("a block"), out);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if x86::avx2_supported() {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(x: &[f32], out: &mut Vec<f32>) {
            each_block(x, out)
        }
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { avx2(x, out) };
    }
    each_block(x, out)
}

/// Kernels the running CPU supports, best last (`scalar` first).
pub fn available() -> Vec<&'static dyn Q4Kernel> {
    #[allow(unused_mut)]
    let mut v: Vec<&'static dyn Q4Kernel> = vec![&scalar::SCALAR];
    #[cfg(target_arch = "x86_64")]
    {
        if x86::avx2_supported() {
            v.push(&x86::AVX2);
        }
        if x86::avx512vnni_supported() {
            v.push(&x86::AVX512VNNI);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if aarch64::neon_supported() {
            v.push(&aarch64::NEON);
        }
        if aarch64::dotprod_supported() {
            v.push(&aarch64::DOTPROD);
        }
    }
    v
}

/// The kernel called `name`, or `None` if unknown or unsupported on this CPU.
pub fn by_name(name: &str) -> Option<&'static dyn Q4Kernel> {
    available().into_iter().find(|k| k.name() == name)
}

/// The best available kernel, unless the env var `NEXTWORD_KERNEL` names another one
/// (`scalar|avx2|avx512vnni|neon|dotprod`); an unknown or unsupported name logs a warning
/// and falls back to the best. Decided once per process.
pub fn select() -> &'static dyn Q4Kernel {
    static SELECTED: OnceLock<&'static dyn Q4Kernel> = OnceLock::new();
    *SELECTED.get_or_init(|| {
        let best = *available().last().expect("scalar is always available");
        match std::env::var("NEXTWORD_KERNEL") {
            Ok(name) if !name.trim().is_empty() => {
                let name = name.trim();
                match by_name(name) {
                    Some(k) => k,
                    None => {
                        if KERNEL_NAMES.contains(&name) {
                            log::warn!("NEXTWORD_KERNEL={name}: not supported on this CPU, using {}", best.name());
                        } else {
                            log::warn!(
                                "NEXTWORD_KERNEL={name}: unknown kernel (expected one of {KERNEL_NAMES:?}), using {}",
                                best.name()
                            );
                        }
                        best
                    }
                }
            }
            _ => best,
        }
    })
}

#[cfg(test)]
mod tests;
