//! Weight formats: how a tensor's bytes map to numbers, in the file (ggml's blocks, IEEE
//! halves) and on the GPU.
//!
//! ggml's block formats hold 32 weights per block with an f16 scale (and, for Q4_1, an f16
//! minimum). Q4_0 and Q8_0 blocks are 18 and 34 bytes, which WGSL cannot address as `u32`s,
//! so the GPU copy is repacked into 4-byte-aligned blocks with the same numbers:
//! * [`GpuFormat::Q4`]: 5 words per block, `[d | m << 16, q0..q15 as 4 words]`, value
//!   `d * q + m`; Q4_1 is already this, Q4_0 becomes it with `m = -8 d` (exact in f16);
//! * [`GpuFormat::Q8`]: 9 words per block, `[d, q0..q31 as 8 words of i8]`, value `d * q`;
//! * `F16`: two halves per word; `F32`: one float per word (bf16 is widened to it, exactly).
//!
//! Weights stay quantized on the GPU and are dequantized inside the matrix kernels.

use half::{bf16, f16};

pub const BLOCK: usize = 32;

/// A tensor's format in a model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
}

/// A tensor's format on the GPU (see the module's note).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuFormat {
    F32,
    F16,
    Q4,
    Q8,
}

impl GpuFormat {
    pub const ALL: [GpuFormat; 4] = [GpuFormat::F32, GpuFormat::F16, GpuFormat::Q4, GpuFormat::Q8];

    pub fn name(self) -> &'static str {
        match self {
            GpuFormat::F32 => "f32",
            GpuFormat::F16 => "f16",
            GpuFormat::Q4 => "q4",
            GpuFormat::Q8 => "q8",
        }
    }

    /// Elements per row must be a multiple of this.
    pub fn row_multiple(self) -> usize {
        match self {
            GpuFormat::F32 | GpuFormat::F16 => 8,
            GpuFormat::Q4 | GpuFormat::Q8 => BLOCK,
        }
    }
}

impl Format {
    /// ggml's type ids (`enum ggml_type`).
    pub fn from_ggml_type(id: u32) -> Option<Format> {
        Some(match id {
            0 => Format::F32,
            1 => Format::F16,
            2 => Format::Q4_0,
            3 => Format::Q4_1,
            8 => Format::Q8_0,
            30 => Format::BF16,
            _ => return None,
        })
    }

    /// Bytes of `n` elements, `None` when `n` does not fill whole blocks.
    pub fn bytes_for(self, n: u64) -> Option<usize> {
        let n = usize::try_from(n).ok()?;
        match self {
            Format::F32 => n.checked_mul(4),
            Format::F16 | Format::BF16 => n.checked_mul(2),
            Format::Q4_0 | Format::Q4_1 | Format::Q8_0 => {
                (n % BLOCK == 0).then(|| (n / BLOCK) * self.block_bytes())
            }
        }
    }

    fn block_bytes(self) -> usize {
        match self {
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q8_0 => 34,
            _ => unreachable!("not a block format"),
        }
    }

    pub fn gpu(self) -> GpuFormat {
        match self {
            Format::F32 | Format::BF16 => GpuFormat::F32,
            Format::F16 => GpuFormat::F16,
            Format::Q4_0 | Format::Q4_1 => GpuFormat::Q4,
            Format::Q8_0 => GpuFormat::Q8,
        }
    }
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// The CPU reference's reading of a tensor: every element as f32, exactly as ggml defines
/// the block formats.
pub fn dequantize(format: Format, bytes: &[u8]) -> Vec<f32> {
    match format {
        Format::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Format::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Format::BF16 => bytes
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Format::Q4_0 | Format::Q4_1 => {
            let mut out = Vec::with_capacity(bytes.len() / format.block_bytes() * BLOCK);
            for block in bytes.chunks_exact(format.block_bytes()) {
                let d = half_at(block, 0);
                let (m, qs) = if format == Format::Q4_1 {
                    (half_at(block, 2), &block[4..20])
                } else {
                    (-8.0 * d, &block[2..18])
                };
                // Low nibbles are elements 0..16, high nibbles 16..32.
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0xF) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
            out
        }
        Format::Q8_0 => {
            let mut out = Vec::with_capacity(bytes.len() / 34 * BLOCK);
            for block in bytes.chunks_exact(34) {
                let d = half_at(block, 0);
                out.extend(
                    block[2..]
                        .iter()
                        .map(|&q| d * f32::from(i8::from_ne_bytes([q]))),
                );
            }
            out
        }
    }
}

/// The GPU copy of a tensor (see the module's note), as little-endian words.
pub fn repack(format: Format, bytes: &[u8]) -> Vec<u32> {
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    match format {
        // Q4_1's 20-byte blocks are whole words already.
        Format::F32 | Format::F16 | Format::Q4_1 => bytes.chunks_exact(4).map(word).collect(),
        Format::BF16 => dequantize(format, bytes)
            .into_iter()
            .map(f32::to_bits)
            .collect(),
        Format::Q4_0 => {
            let mut out = Vec::with_capacity(bytes.len() / 18 * 5);
            for block in bytes.chunks_exact(18) {
                let d = f16::from_le_bytes([block[0], block[1]]);
                let m = f16::from_f32(-8.0 * d.to_f32());
                out.push(u32::from(d.to_bits()) | (u32::from(m.to_bits()) << 16));
                out.extend(block[2..18].chunks_exact(4).map(word));
            }
            out
        }
        Format::Q8_0 => {
            let mut out = Vec::with_capacity(bytes.len() / 34 * 9);
            for block in bytes.chunks_exact(34) {
                out.push(u32::from(u16::from_le_bytes([block[0], block[1]])));
                out.extend(block[2..34].chunks_exact(4).map(word));
            }
            out
        }
    }
}

/// Q4_0 blocks rewritten as the Q4_1 blocks of the same values (`m = -8·d`, exact in f16
/// as `repack` computes it for the GPU): so Q4_0 and Q4_1 matrices can be stacked.
pub fn q4_0_as_q4_1(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 18 * 20);
    for block in bytes.chunks_exact(18) {
        let d = f16::from_le_bytes([block[0], block[1]]);
        let m = f16::from_f32(-8.0 * d.to_f32());
        out.extend_from_slice(&block[..2]);
        out.extend_from_slice(&m.to_le_bytes());
        out.extend_from_slice(&block[2..18]);
    }
    out
}

/// Quantizes f32 values into a ggml block format the way llama.cpp's reference quantizers
/// do; used to make test tensors and tiny models in every format.
pub fn quantize(format: Format, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        Format::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        Format::F16 => values
            .iter()
            .for_each(|v| out.extend(f16::from_f32(*v).to_le_bytes())),
        Format::BF16 => values
            .iter()
            .for_each(|v| out.extend(bf16::from_f32(*v).to_le_bytes())),
        Format::Q4_0 => {
            for block in values.chunks_exact(BLOCK) {
                // The value of largest magnitude maps to -8, as in ggml's quantize_row_q4_0.
                let max = block
                    .iter()
                    .copied()
                    .fold(0.0f32, |a, v| if v.abs() > a.abs() { v } else { a });
                let d = max / -8.0;
                let id = if d == 0.0 { 0.0 } else { 1.0 / d };
                out.extend(f16::from_f32(d).to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
                for j in 0..16 {
                    out.push(q(block[j]) | (q(block[j + 16]) << 4));
                }
            }
        }
        Format::Q4_1 => {
            for block in values.chunks_exact(BLOCK) {
                let min = block.iter().copied().fold(f32::INFINITY, f32::min);
                let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (max - min) / 15.0;
                let id = if d == 0.0 { 0.0 } else { 1.0 / d };
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(f16::from_f32(min).to_le_bytes());
                let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                for j in 0..16 {
                    out.push(q(block[j]) | (q(block[j + 16]) << 4));
                }
            }
        }
        Format::Q8_0 => {
            for block in values.chunks_exact(BLOCK) {
                let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if d == 0.0 { 0.0 } else { 1.0 / d };
                out.extend(f16::from_f32(d).to_le_bytes());
                out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q4_0 rewritten as Q4_1 holds the very same values, so stacking the two formats
    /// changes no weight.
    #[test]
    fn q4_0_as_q4_1_keeps_every_value() {
        let values: Vec<f32> = (0..128)
            .map(|i| ((i * 37) % 29) as f32 / 7.0 - 2.0)
            .collect();
        let q4_0 = quantize(Format::Q4_0, &values);
        let as_q4_1 = q4_0_as_q4_1(&q4_0);
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(
            bits(dequantize(Format::Q4_1, &as_q4_1)),
            bits(dequantize(Format::Q4_0, &q4_0))
        );
        assert_eq!(repack(Format::Q4_1, &as_q4_1), repack(Format::Q4_0, &q4_0));
    }

    #[test]
    fn block_formats_round_trip_within_their_step() {
        let values: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 31.5) / 16.0)
            .collect();
        for (format, step) in [
            (Format::Q4_0, 4.0 / 8.0),
            (Format::Q4_1, 4.0 / 15.0),
            (Format::Q8_0, 2.0 / 127.0),
        ] {
            let back = dequantize(format, &quantize(format, &values));
            assert_eq!(back.len(), 64);
            for (a, b) in values.iter().zip(&back) {
                assert!((a - b).abs() <= step, "{format:?}: {a} vs {b}");
            }
        }
        let exact = dequantize(Format::BF16, &quantize(Format::BF16, &[1.5, -2.25]));
        assert_eq!(exact, [1.5, -2.25]);
    }

    #[test]
    fn q4_0_repacks_to_the_same_numbers() {
        let values: Vec<f32> = (0..32).map(|i| i as f32 / 7.0 - 2.0).collect();
        let bytes = quantize(Format::Q4_0, &values);
        let words = repack(Format::Q4_0, &bytes);
        let q41: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(
            dequantize(Format::Q4_1, &q41),
            dequantize(Format::Q4_0, &bytes)
        );
        assert!(Format::Q4_0.bytes_for(33).is_none());
    }
}
