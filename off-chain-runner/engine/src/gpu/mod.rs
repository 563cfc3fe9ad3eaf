//! The wgpu device, the kernels (the `.wgsl` files beside this one) and the recording of a
//! model's forward pass as a fixed list of dispatches: pipelines, buffers and bind groups
//! are made once per model; each step only writes its row count and its rows' [`Row`]s
//! (position, KV cache row, attended rows) and submits one command buffer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::quant::GpuFormat;
use crate::{Error, Result};

mod linear;
pub use linear::{Tile, CPU_BLOCK_TILES, CPU_FLOAT_TILES, GPU_TILES};

/// The kernels, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The one linear kernel (`linear.wgsl`) for weights in this format, on this tile
    /// shape (which changes how outputs are spread, never how each is computed).
    Linear(GpuFormat, Tile),
    RmsNorm,
    LayerNorm,
    Rope,
    Attention,
    Elementwise,
    Argmax,
}

impl Kernel {
    fn source(self) -> String {
        match self {
            Kernel::Linear(f, tile) => linear::source(f, tile),
            Kernel::RmsNorm => include_str!("rmsnorm.wgsl").into(),
            Kernel::LayerNorm => include_str!("layernorm.wgsl").into(),
            Kernel::Rope => include_str!("rope.wgsl").into(),
            Kernel::Attention => include_str!("attention.wgsl").into(),
            Kernel::Elementwise => include_str!("elementwise.wgsl").into(),
            Kernel::Argmax => include_str!("argmax.wgsl").into(),
        }
    }
}

/// A wgpu device and queue with the kernels compiled so far.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// A CPU adapter (lavapipe): the linear kernel's tiles are chosen for it (linear.rs).
    cpu: bool,
    pipelines: Mutex<HashMap<Kernel, Arc<wgpu::ComputePipeline>>>,
}

const NO_ADAPTER: &str = "no wgpu adapter found. On a machine without a GPU install a CPU \
    Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`, which \
    scripts/setup-gpu.sh does); with a GPU, install its Vulkan, Metal or DX12 driver";

impl Gpu {
    /// The highest-performance adapter wgpu finds (a discrete GPU before lavapipe).
    ///
    /// No optional feature is asked for. The linear kernel adds its lane sums through
    /// workgroup memory once per tile, in the order it spells out; subgroup shuffles (whose
    /// lane numbering is the adapter's) would save little there and be a second path to
    /// keep bit-identical to the first.
    pub fn new() -> Result<Arc<Gpu>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("{NO_ADAPTER} ({e})")))?;
        let info = adapter.get_info();
        let supported = adapter.limits();
        // Ask for the adapter's own storage limits: the defaults (128 MiB bindings, 8
        // storage buffers per stage) are below what large weights and attention need.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: supported.max_storage_buffer_binding_size,
            max_buffer_size: supported.max_buffer_size,
            max_storage_buffers_per_shader_stage: supported
                .max_storage_buffers_per_shader_stage
                .min(16),
            ..wgpu::Limits::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("market-engine"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("{} refused a device: {e}", info.name)))?;
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        Ok(Arc::new(Gpu {
            device,
            queue,
            info,
            limits,
            cpu,
            pipelines: Mutex::default(),
        }))
    }

    /// "name (backend, driver)", for benchmark reports and logs.
    pub fn adapter_name(&self) -> String {
        format!(
            "{} ({:?}, {} {})",
            self.info.name, self.info.backend, self.info.driver, self.info.driver_info
        )
    }

    pub fn pipeline(&self, kernel: Kernel) -> Arc<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().expect("pipeline cache poisoned");
        cache
            .entry(kernel)
            .or_insert_with(|| {
                let label = format!("{kernel:?}");
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&label),
                        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                    });
                Arc::new(
                    self.device
                        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(&label),
                            layout: None,
                            module: &module,
                            entry_point: Some("main"),
                            compilation_options: wgpu::PipelineCompilationOptions::default(),
                            cache: None,
                        }),
                )
            })
            .clone()
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.len() as u64 > self.limits.max_storage_buffer_binding_size {
            return Err(Error::Format(format!(
                "{label} is {} bytes, over this adapter's storage binding limit of {} bytes",
                bytes.len(),
                self.limits.max_storage_buffer_binding_size
            )));
        }
        // wgpu refuses empty bindings; a placeholder still needs one word.
        let contents: &[u8] = if bytes.is_empty() { &[0; 4] } else { bytes };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// A zeroed storage buffer of `floats` f32s.
    pub fn scratch(&self, label: &str, floats: usize) -> Result<wgpu::Buffer> {
        let bytes = (floats.max(1) * 4) as u64;
        if bytes > self.limits.max_storage_buffer_binding_size {
            return Err(Error::Format(format!(
                "{label} needs {bytes} bytes, over this adapter's binding limit"
            )));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default())
    }

    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Submits `encoder`'s work with a copy of `floats` f32s of `src` from `offset` (in
    /// floats), and reads them back to the host.
    pub fn finish_and_read(
        &self,
        mut encoder: wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        offset: usize,
        floats: usize,
        readback: &mut Readback,
    ) -> Result<Vec<f32>> {
        let bytes = (floats * 4) as u64;
        let staging = match readback.0.take() {
            Some(kept) if kept.size() >= bytes => kept,
            _ => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes.max(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        encoder.copy_buffer_to_buffer(src, (offset * 4) as u64, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .slice(..bytes)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("device lost while waiting: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("readback never completed".into()))?
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(..bytes)
                .map_err(|e| Error::Gpu(format!("readback map: {e}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        readback.0 = Some(staging);
        Ok(out)
    }
}

/// The staging buffer of a caller's reads, kept between them (replaced by a larger one
/// when a read needs more), so a step allocates none.
#[derive(Default)]
pub struct Readback(Option<wgpu::Buffer>);

/// The per-step uniform every kernel reads: rows in this step.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Step {
    m: u32,
    pad: [u32; 3],
}

/// What the kernels know of one row of a step (one token): where it is in its sequence,
/// where its key and value go, and which key and value rows its query sees. Rows of
/// different sequences in one step differ only here, so a batch is as many sequences as
/// rows need, with no padding and no mask.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Row {
    /// Position in the sequence: the rotary angle (decoders).
    pub pos: u32,
    /// Row of the KV cache this row's key and value are written to (decoders).
    pub kv_row: u32,
    /// First key/value row this row's query attends to.
    pub kv_start: u32,
    /// How many key/value rows from `kv_start` it attends to.
    pub kv_len: u32,
}

impl Row {
    /// Token `pos` of a causal sequence whose cache rows begin at `base` (a slot): written
    /// at `base + pos`, attending to `base ..= base + pos`.
    pub fn causal(base: usize, pos: usize) -> Row {
        Row {
            pos: pos as u32,
            kv_row: (base + pos) as u32,
            kv_start: base as u32,
            kv_len: (pos + 1) as u32,
        }
    }

    /// `m` tokens of one causal sequence from position `pos`, its cache beginning at row 0.
    pub fn sequence(m: usize, pos: usize) -> Vec<Row> {
        (pos..pos + m).map(|p| Row::causal(0, p)).collect()
    }

    /// `len` tokens of one text at rows `start..start + len` of the step, each attending to
    /// all of them (an encoder).
    pub fn bidirectional(start: usize, len: usize) -> Vec<Row> {
        (0..len)
            .map(|i| Row {
                pos: i as u32,
                kv_row: (start + i) as u32,
                kv_start: start as u32,
                kv_len: len as u32,
            })
            .collect()
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LinearParams {
    n: u32,
    k: u32,
    flags: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    n: u32,
    eps: f32,
    flags: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    heads: u32,
    head_dim: u32,
    flags: u32,
    row_stride: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    ctx: u32,
    scale: f32,
    pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ArgmaxParams {
    n: u32,
    pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    n: u32,
    op: u32,
    pad: [u32; 2],
}

/// A weight matrix on the GPU: `n` rows of `k`, in `format`.
pub struct Weight {
    pub buffer: wgpu::Buffer,
    pub format: GpuFormat,
    pub n: usize,
    pub k: usize,
}

impl Weight {
    /// Uploads a tensor already repacked by [`crate::quant::repack`].
    pub fn new(
        gpu: &Gpu,
        label: &str,
        format: GpuFormat,
        words: &[u32],
        n: usize,
        k: usize,
    ) -> Result<Weight> {
        if !k.is_multiple_of(format.row_multiple()) || !k.is_multiple_of(16) {
            return Err(Error::Format(format!(
                "{label}: rows of {k} are not a multiple of {} as the {} kernels need",
                format.row_multiple().max(16),
                format.name()
            )));
        }
        Ok(Weight {
            buffer: gpu.upload(label, words)?,
            format,
            n,
            k,
        })
    }
}

/// Workgroups along one grid dimension, below every adapter's limit (65535).
const GRID_X: u32 = 32768;

/// How many workgroups a dispatch needs for `m` rows.
#[derive(Clone, Copy, Debug)]
enum Grid {
    /// Linear layer of `n` outputs per row, on tiles of `8 · rn` of them by `tm` rows.
    Linear { n: u32, tile: Tile },
    /// One workgroup per row.
    Rows,
    /// Rope: (pairs / 64, rows).
    Rope { pairs: u32 },
    /// Attention: (heads, rows).
    Heads { heads: u32 },
    /// Element-wise over rows of n, 256 per workgroup.
    Elements { n: u32 },
}

impl Grid {
    fn size(self, m: u32) -> (u32, u32, u32) {
        match self {
            Grid::Linear { n, tile } => {
                let groups = n.div_ceil(8 * tile.rn);
                (
                    groups.min(GRID_X),
                    groups.div_ceil(GRID_X),
                    m.div_ceil(tile.tm),
                )
            }
            Grid::Rows => (m, 1, 1),
            Grid::Rope { pairs } => (pairs.div_ceil(64), m, 1),
            Grid::Heads { heads } => (heads, m, 1),
            Grid::Elements { n } => {
                let groups = (m * n).div_ceil(256);
                (groups.min(GRID_X), groups.div_ceil(GRID_X), 1)
            }
        }
    }
}

/// One kernel of a program, in one or more variants by the rows of a step.
struct Dispatch {
    /// By increasing bound: the first whose bound is at least a step's rows runs it.
    variants: Vec<Variant>,
}

struct Variant {
    /// The most rows this variant is chosen for.
    up_to: u32,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind: wgpu::BindGroup,
    grid: Grid,
}

/// A forward pass recorded once: a list of dispatches over fixed buffers. Each step writes
/// its rows' [`Row`]s, then encodes the same dispatches whatever its rows are: how many
/// sequences a step holds changes the grid's size, never the kernels nor their number.
pub struct Program {
    gpu: Arc<Gpu>,
    step: wgpu::Buffer,
    rows: wgpu::Buffer,
    max_rows: usize,
    dispatches: Vec<Dispatch>,
    /// Dispatches encoded so far, for tests that check a step's cost.
    encoded: AtomicU64,
}

/// A buffer that may stand for "none" (an unused binding).
#[derive(Clone, Copy)]
pub struct Bias<'a>(pub Option<&'a wgpu::Buffer>);

impl Program {
    /// A program for steps of at most `max_rows` rows.
    pub fn new(gpu: &Arc<Gpu>, max_rows: usize) -> Program {
        let step = gpu.uniform("step", &Step { m: 0, pad: [0; 3] });
        let rows = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("rows"),
            size: (max_rows.max(1) * std::mem::size_of::<Row>()) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Program {
            gpu: gpu.clone(),
            step,
            rows,
            max_rows,
            dispatches: Vec::new(),
            encoded: AtomicU64::new(0),
        }
    }

    fn push(&mut self, kernel: Kernel, buffers: &[&wgpu::Buffer], grid: Grid) {
        let variant = self.variant(u32::MAX, kernel, buffers, grid);
        self.dispatches.push(Dispatch {
            variants: vec![variant],
        });
    }

    fn variant(
        &self,
        up_to: u32,
        kernel: Kernel,
        buffers: &[&wgpu::Buffer],
        grid: Grid,
    ) -> Variant {
        let pipeline = self.gpu.pipeline(kernel);
        let bind = self.gpu.bind(&pipeline, buffers);
        Variant {
            up_to,
            pipeline,
            bind,
            grid,
        }
    }

    /// `y = x · Wᵀ (+ bias) (+ y)`; `to_cache` writes row `m` at its [`Row::kv_row`].
    /// Runs on the adapter's tile for each step size.
    pub fn linear(
        &mut self,
        x: &wgpu::Buffer,
        w: &Weight,
        bias: Bias,
        y: &wgpu::Buffer,
        accumulate: bool,
        to_cache: bool,
    ) {
        let tiles = linear::tiles(self.gpu.cpu, w.format);
        self.linear_tiles(tiles, x, w, bias, y, accumulate, to_cache);
    }

    /// [`Program::linear`] on `tile` whatever the step's rows: to check that every tile
    /// gives the same bits, the kernel's promise.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_on_tile(
        &mut self,
        tile: Tile,
        x: &wgpu::Buffer,
        w: &Weight,
        bias: Bias,
        y: &wgpu::Buffer,
        accumulate: bool,
        to_cache: bool,
    ) {
        self.linear_tiles(&[(u32::MAX, tile)], x, w, bias, y, accumulate, to_cache);
    }

    #[allow(clippy::too_many_arguments)]
    fn linear_tiles(
        &mut self,
        tiles: &[(u32, Tile)],
        x: &wgpu::Buffer,
        w: &Weight,
        bias: Bias,
        y: &wgpu::Buffer,
        accumulate: bool,
        to_cache: bool,
    ) {
        let flags =
            u32::from(bias.0.is_some()) | (u32::from(accumulate) << 1) | (u32::from(to_cache) << 2);
        let params = self.gpu.uniform(
            "linear",
            &LinearParams {
                n: w.n as u32,
                k: w.k as u32,
                flags,
                pad: 0,
            },
        );
        let placeholder;
        let bias = if let Some(b) = bias.0 {
            b
        } else {
            placeholder = self.gpu.scratch("no-bias", 1).expect("one word fits");
            &placeholder
        };
        let buffers = [x, &w.buffer, bias, y, &params, &self.step, &self.rows];
        let variants = tiles
            .iter()
            .map(|&(up_to, tile)| {
                let grid = Grid::Linear {
                    n: w.n as u32,
                    tile,
                };
                self.variant(up_to, Kernel::Linear(w.format, tile), &buffers, grid)
            })
            .collect();
        self.dispatches.push(Dispatch { variants });
    }

    /// RMSNorm of each row of `x` into `y`.
    pub fn rmsnorm(
        &mut self,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
        eps: f32,
    ) {
        let unused = self.gpu.scratch("no-index", 1).expect("one word fits");
        self.norm_rows(x, false, g, y, n, eps, &unused);
    }

    /// RMSNorm of rows `index[0..m]` of `x` into rows `0..m` of `y`: the rows a step
    /// needs logits of, gathered.
    pub fn rmsnorm_gather(
        &mut self,
        x: &wgpu::Buffer,
        index: &wgpu::Buffer,
        g: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
        eps: f32,
    ) {
        self.norm_rows(x, true, g, y, n, eps, index);
    }

    #[allow(clippy::too_many_arguments)]
    fn norm_rows(
        &mut self,
        x: &wgpu::Buffer,
        gather: bool,
        g: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
        eps: f32,
        index: &wgpu::Buffer,
    ) {
        let params = self.gpu.uniform(
            "rmsnorm",
            &NormParams {
                n: n as u32,
                eps,
                flags: u32::from(gather),
                pad: 0,
            },
        );
        let step = self.step.clone();
        self.push(
            Kernel::RmsNorm,
            &[x, g, y, &params, &step, index],
            Grid::Rows,
        );
    }

    pub fn layernorm(
        &mut self,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        b: &wgpu::Buffer,
        n: usize,
        eps: f32,
    ) {
        let params = self.gpu.uniform(
            "layernorm",
            &NormParams {
                n: n as u32,
                eps,
                flags: 0,
                pad: 0,
            },
        );
        let step = self.step.clone();
        self.push(Kernel::LayerNorm, &[x, g, b, &params, &step], Grid::Rows);
    }

    /// Rotates rows of `t` (stride `row_stride` floats) in place, each by its own
    /// [`Row::pos`]; `in_cache`: row `m` of `t` is at its [`Row::kv_row`].
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &mut self,
        t: &wgpu::Buffer,
        table: &wgpu::Buffer,
        heads: usize,
        head_dim: usize,
        row_stride: usize,
        interleaved: bool,
        in_cache: bool,
    ) {
        let flags = u32::from(interleaved) | (u32::from(in_cache) << 1);
        let params = self.gpu.uniform(
            "rope",
            &RopeParams {
                heads: heads as u32,
                head_dim: head_dim as u32,
                flags,
                row_stride: row_stride as u32,
            },
        );
        let (step, rows) = (self.step.clone(), self.rows.clone());
        self.push(
            Kernel::Rope,
            &[t, table, &params, &step, &rows],
            Grid::Rope {
                pairs: (heads * head_dim / 2) as u32,
            },
        );
    }

    /// Attention of each query row of `q` over the key and value rows its [`Row`] names;
    /// `ctx` is the most a row attends to (the `scores` scratch holds `ctx` per row and head).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        o: &wgpu::Buffer,
        scores: &wgpu::Buffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        ctx: usize,
    ) {
        let params = self.gpu.uniform(
            "attention",
            &AttentionParams {
                heads: heads as u32,
                kv_heads: kv_heads as u32,
                head_dim: head_dim as u32,
                ctx: ctx as u32,
                scale: 1.0 / (head_dim as f32).sqrt(),
                pad: [0; 3],
            },
        );
        let (step, rows) = (self.step.clone(), self.rows.clone());
        self.push(
            Kernel::Attention,
            &[q, k, v, o, scores, &params, &step, &rows],
            Grid::Heads {
                heads: heads as u32,
            },
        );
    }

    /// `tokens[r]` = the index of the largest value of row `r` of `values` (rows of `n`),
    /// the lowest on ties: greedy decoding's pick.
    pub fn argmax(&mut self, values: &wgpu::Buffer, tokens: &wgpu::Buffer, n: usize) {
        let params = self.gpu.uniform(
            "argmax",
            &ArgmaxParams {
                n: n as u32,
                pad: [0; 3],
            },
        );
        let step = self.step.clone();
        self.push(
            Kernel::Argmax,
            &[values, tokens, &params, &step],
            Grid::Rows,
        );
    }

    /// `a = silu(a) * b` over rows of `n`.
    pub fn silu_mul(&mut self, a: &wgpu::Buffer, b: &wgpu::Buffer, n: usize) {
        self.elementwise(a, b, n, 0);
    }

    /// `a = gelu(a)` over rows of `n`.
    pub fn gelu(&mut self, a: &wgpu::Buffer, n: usize) {
        let unused = self.gpu.scratch("unused", 1).expect("one word fits");
        self.elementwise(a, &unused, n, 1);
    }

    fn elementwise(&mut self, a: &wgpu::Buffer, b: &wgpu::Buffer, n: usize, op: u32) {
        let params = self.gpu.uniform(
            "elementwise",
            &ElementwiseParams {
                n: n as u32,
                op,
                pad: [0; 2],
            },
        );
        let step = self.step.clone();
        self.push(
            Kernel::Elementwise,
            &[a, b, &params, &step],
            Grid::Elements { n: n as u32 },
        );
    }

    /// Rows a step may have.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Dispatches encoded since the program was made.
    pub fn dispatches_encoded(&self) -> u64 {
        self.encoded.load(Ordering::Relaxed)
    }

    /// Encodes every dispatch for a step of `rows`, in one compute pass. The caller writes
    /// nothing else between this and the submission.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, rows: &[Row]) {
        assert!(
            rows.len() <= self.max_rows,
            "a step of {} rows in a program made for {}",
            rows.len(),
            self.max_rows
        );
        if !rows.is_empty() {
            self.gpu
                .queue
                .write_buffer(&self.rows, 0, bytemuck::cast_slice(rows));
        }
        self.encode_count(encoder, rows.len());
    }

    /// Encodes every dispatch for a step of `m` rows whose [`Row`]s no kernel of this
    /// program reads (an output head: norm and linear layers only).
    pub fn encode_count(&self, encoder: &mut wgpu::CommandEncoder, m: usize) {
        assert!(
            m <= self.max_rows,
            "a step of {m} rows in a program made for {}",
            self.max_rows
        );
        self.gpu.queue.write_buffer(
            &self.step,
            0,
            bytemuck::bytes_of(&Step {
                m: m as u32,
                pad: [0; 3],
            }),
        );
        let m = m as u32;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        for d in &self.dispatches {
            let v = d
                .variants
                .iter()
                .find(|v| m <= v.up_to)
                .expect("the last variant takes any rows");
            let (x, y, z) = v.grid.size(m);
            pass.set_pipeline(&v.pipeline);
            pass.set_bind_group(0, &v.bind, &[]);
            pass.dispatch_workgroups(x, y, z);
        }
        self.encoded
            .fetch_add(self.dispatches.len() as u64, Ordering::Relaxed);
    }
}
