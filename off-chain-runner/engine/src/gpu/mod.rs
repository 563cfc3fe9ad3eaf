//! The wgpu device and the recording of a model's forward pass as a fixed list of
//! dispatches ([`Program`]): pipelines, buffers and bind groups are made once per model;
//! each step only writes its row count and its rows' [`Row`]s (position, KV cache row,
//! attended rows) and submits one command buffer. The kernels, and the `Program` method
//! that records each, are in [`crate::ops`], one a file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::ops::{self, Row, Tile};
use crate::quant::GpuFormat;
use crate::{Error, Result};

/// The kernels, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The one linear kernel for weights in this format, on this tile shape (which changes
    /// how outputs are spread, never how each is computed), storing through this epilogue.
    Linear(GpuFormat, Tile, ops::linear::Epilogue),
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
            Kernel::Linear(f, tile, epilogue) => ops::linear::source(f, tile, epilogue),
            Kernel::RmsNorm => ops::rmsnorm::WGSL.into(),
            Kernel::LayerNorm => ops::layernorm::WGSL.into(),
            Kernel::Rope => ops::rope::WGSL.into(),
            Kernel::Attention => ops::attention::WGSL.into(),
            Kernel::Elementwise => ops::elementwise::WGSL.into(),
            Kernel::Argmax => ops::argmax::WGSL.into(),
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
    pub(crate) cpu: bool,
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
pub(crate) enum Grid {
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
    /// The tile every linear dispatch recorded runs on, instead of the adapter's table.
    tile: Option<Tile>,
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
            tile: None,
        }
    }

    pub(crate) fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// The uniform holding a step's row count.
    pub(crate) fn step(&self) -> &wgpu::Buffer {
        &self.step
    }

    /// The [`Row`] table of a step.
    pub(crate) fn rows(&self) -> &wgpu::Buffer {
        &self.rows
    }

    /// Every linear dispatch recorded from now on runs on `tile` whatever the step's rows:
    /// to check that every tile gives the same bits, the linear kernel's promise.
    pub fn force_tile(&mut self, tile: Tile) {
        self.tile = Some(tile);
    }

    pub(crate) fn forced_tile(&self) -> Option<Tile> {
        self.tile
    }

    /// Appends a dispatch of `kernel` over `buffers` (bound in order).
    pub(crate) fn push(&mut self, kernel: Kernel, buffers: &[&wgpu::Buffer], grid: Grid) {
        self.push_variants(&[(u32::MAX, kernel, grid)], buffers);
    }

    /// Appends a dispatch in variants by the rows of a step: `(up_to, kernel, grid)` by
    /// increasing `up_to`, the last taking any rows.
    pub(crate) fn push_variants(
        &mut self,
        variants: &[(u32, Kernel, Grid)],
        buffers: &[&wgpu::Buffer],
    ) {
        let variants = variants
            .iter()
            .map(|&(up_to, kernel, grid)| {
                let pipeline = self.gpu.pipeline(kernel);
                let bind = self.gpu.bind(&pipeline, buffers);
                Variant {
                    up_to,
                    pipeline,
                    bind,
                    grid,
                }
            })
            .collect();
        self.dispatches.push(Dispatch { variants });
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
