//! Each W4A8 kernel this CPU has, in its own weight layout, on the layer shapes of the bundled
//! English model (d_model 320, feed-forward 864, vocabulary 8192), with 1 activation row (a
//! decode step or keystroke) and 20 rows (the 20-token context forward).
//!
//! Criterion prints two throughputs per case: `elem/s` counts multiply-adds as 2 operations
//! (so `Gelem/s` reads as GOP/s), `B/s` counts the bytes of weights, scales and zero points
//! the kernel streams plus its f32 activations in and out (so `GiB/s` is the bandwidth it
//! reaches). A name filter picks cases:
//!
//!     cargo bench -p nextword-benches --bench kernels
//!     cargo bench -p nextword-benches --bench kernels -- 'ff_gate_up/m1'

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nextword_core::kernels::{available, Q4Matrix, BLOCK};

/// (layer, N outputs, K inputs) of the model's MatMulNBits nodes: 8 layers of q/k/v in one
/// node (960x320), o (320x320), the two feed-forward inputs gate/up in one node (1728x320) and
/// the output (320x864), and the tied LM head.
const LAYERS: [(&str, usize, usize); 5] = [
    ("attn_qkv", 960, 320),
    ("attn_o", 320, 320),
    ("ff_gate_up", 1728, 320),
    ("ff_down", 320, 864),
    ("lm_head", 8192, 320),
];
const ROWS: [usize; 2] = [1, 20];

/// Deterministic pseudo-random bytes (a bench needs no cryptographic randomness or crate).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn matrix(n: usize, k: usize) -> Q4Matrix {
    let nb = k / BLOCK;
    let packed = noise(n as u64 * 31 + k as u64, n * nb * BLOCK / 2);
    let scales: Vec<f32> = noise(7, n * nb)
        .iter()
        .map(|&b| 1e-3 + b as f32 * 1e-4)
        .collect();
    Q4Matrix::from_matmul_nbits(n, k, &packed, &scales, None).expect("valid shape")
}

fn activations(m: usize, k: usize) -> Vec<f32> {
    noise(m as u64 * 1000 + k as u64, m * k)
        .iter()
        .map(|&b| (b as f32 - 127.5) / 64.0)
        .collect()
}

fn kernels(c: &mut Criterion) {
    for (layer, n, k) in LAYERS {
        let w = matrix(n, k);
        // Packed nibbles + one f32 scale and one zero-point byte per block of 32.
        let weight_bytes = (n * k / 2 + n * (k / BLOCK) * 5) as u64;
        for m in ROWS {
            let mut group = c.benchmark_group(format!("{layer}/m{m}"));
            group.throughput(Throughput::ElementsAndBytes {
                elements: (2 * m * n * k) as u64,
                bytes: weight_bytes + (m * k * 4 + m * n * 4) as u64,
            });
            let x = activations(m, k);
            let mut out = vec![0f32; m * n];
            for kernel in available() {
                // Each kernel on the layout the model gives it (`Q4Kernel::layout`).
                let w = w.clone().into_layout(kernel.layout());
                group.bench_with_input(
                    BenchmarkId::new(kernel.name(), format!("{n}x{k}")),
                    &x,
                    |b, x| b.iter(|| kernel.matmul(black_box(x), m, &w, &mut out)),
                );
            }
            group.finish();
        }
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
