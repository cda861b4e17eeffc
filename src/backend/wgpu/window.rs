//! Kernels split into dispatches that fit the device's limits (`shaders/window.wgsl`).
//!
//! A buffer may hold up to `max_buffer_size` bytes, but a shader sees at most
//! `max_storage_buffer_binding_size` bytes of it through one binding (128 MiB on lavapipe and on
//! many GPUs), and a dispatch has at most `max_compute_workgroups_per_dimension`² workgroups. So
//! a kernel describes its work as units (elements, rows, samples) and, for each storage buffer,
//! which elements a range of units touches ([`Span`]). [`WgpuBackend::launch`] cuts the units
//! into the longest chunks whose windows (the touched elements, widened down to the device's
//! offset alignment) each fit in one binding and whose workgroups fit in one dispatch, and
//! dispatches once per chunk with the chunk's range and the windows' offsets in the uniform `W`
//! of group 1. The shaders index with global element indices through `at`, so a kernel's
//! arithmetic is the same whether it runs in one dispatch or in many; kernels whose chunks add
//! up (sums over rows, the depth of a product) accumulate into their outputs after the first.
//!
//! A buffer is one wgpu buffer: windows of several tensors then line up element for element
//! whatever their shapes, which a tensor cut across several wgpu buffers would not give (a
//! window would also have to stop at each cut). wgpu puts `max_buffer_size` at 2 GiB on DX12 and
//! on Linux Vulkan drivers other than NVIDIA's, higher on NVIDIA and Metal: well above a binding.

use std::ops::Range;

use wgpu::util::DeviceExt;

use super::{backend_error, word, Kernel, WgpuBackend, WG};
use crate::error::{Error, Result};

/// Storage bindings one kernel may have: the offsets of `Window` in `shaders/window.wgsl` hold 8,
/// the number WebGPU guarantees per shader stage.
const MAX_BINDINGS: usize = 8;

/// The layout of group 1: the window uniform, shared by every pipeline.
pub(super) fn layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("window"),
        entries: &[wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }],
    })
}

/// Which elements of a storage buffer a range of units touches.
#[derive(Clone, Copy)]
pub(crate) enum Span<'a> {
    /// Every element, in every chunk: weights, per-channel vectors, tables, totals.
    Whole,
    /// `n` consecutive elements per unit: units `a..b` touch elements `a·n..b·n`.
    Per(usize),
    /// Any footprint that grows with the units: a range touches at least what every range
    /// inside it touches.
    Map(&'a dyn Fn(Range<usize>) -> Range<usize>),
}

/// A storage binding of a kernel: its buffer and what a range of units touches of it.
#[derive(Clone, Copy)]
pub(crate) struct Arg<'a> {
    buf: &'a wgpu::Buffer,
    span: Span<'a>,
}

impl<'a> Arg<'a> {
    /// `buf`, bound whole in every chunk.
    pub fn whole(buf: &'a wgpu::Buffer) -> Self {
        Arg {
            buf,
            span: Span::Whole,
        }
    }

    /// `buf` with `n` consecutive elements per unit.
    pub fn per(buf: &'a wgpu::Buffer, n: usize) -> Self {
        Arg {
            buf,
            span: Span::Per(n),
        }
    }

    /// `buf` with the elements `span(units)`.
    pub fn map(buf: &'a wgpu::Buffer, span: &'a dyn Fn(Range<usize>) -> Range<usize>) -> Self {
        Arg {
            buf,
            span: Span::Map(span),
        }
    }

    /// The buffer.
    pub fn buf(&self) -> &'a wgpu::Buffer {
        self.buf
    }

    /// What units `u` bind of the buffer.
    pub fn view(&self, u: Range<usize>) -> View<'a> {
        let elems = match self.span {
            Span::Whole => None,
            Span::Per(n) => Some(u.start * n..u.end * n),
            Span::Map(f) => Some(f(u)),
        };
        View {
            buf: self.buf,
            elems,
        }
    }
}

/// What one dispatch binds of a buffer: all of it, or a window over the elements `elems`.
#[derive(Clone)]
pub(crate) struct View<'a> {
    buf: &'a wgpu::Buffer,
    elems: Option<Range<usize>>,
}

impl<'a> View<'a> {
    /// All of `buf`.
    pub fn whole(buf: &'a wgpu::Buffer) -> Self {
        View { buf, elems: None }
    }

    /// The elements `elems` of `buf`.
    pub fn elems(buf: &'a wgpu::Buffer, elems: Range<usize>) -> Self {
        View {
            buf,
            elems: Some(elems),
        }
    }
}

/// A chunk's range `W.first..W.end` of the kernel's split index and its number of workgroups.
type ChunkFn<'a> = dyn Fn(Range<usize>) -> (Range<usize>, usize) + 'a;

/// How a kernel's work divides into units, and what a chunk of units dispatches.
pub(crate) struct Work<'a> {
    /// What one unit is, for errors: "element", "row", "image".
    unit: &'static str,
    units: usize,
    chunk: Box<ChunkFn<'a>>,
}

impl<'a> Work<'a> {
    /// `units` units; `chunk` gives the range and the workgroups of units `a..b`, both growing
    /// with the range.
    pub fn new(
        unit: &'static str,
        units: usize,
        chunk: impl Fn(Range<usize>) -> (Range<usize>, usize) + 'a,
    ) -> Self {
        Work {
            unit,
            units,
            chunk: Box::new(chunk),
        }
    }

    /// One thread per index, `per` indices per unit: units `a..b` are the indices `a·per..b·per`.
    pub fn threads(unit: &'static str, units: usize, per: usize) -> Self {
        Self::new(unit, units, move |u| {
            let r = u.start * per..u.end * per;
            let groups = r.len().div_ceil(WG);
            (r, groups)
        })
    }

    /// `groups` workgroups for every chunk (one per channel, per column); the range is the
    /// chunk's units.
    pub fn groups(unit: &'static str, units: usize, groups: usize) -> Self {
        Self::new(unit, units, move |u| (u, groups))
    }

    /// The range and the workgroups of units `u`.
    pub fn chunk(&self, u: Range<usize>) -> (Range<usize>, usize) {
        (self.chunk)(u)
    }
}

/// The end of the longest chunk `start..end'` (`end' <= end`) that `fits` accepts, or its error
/// for the single unit `start`. `fits` must accept every range inside a range it accepts.
pub(super) fn longest<E>(
    start: usize,
    end: usize,
    fits: impl Fn(Range<usize>) -> std::result::Result<(), E>,
) -> std::result::Result<usize, E> {
    if fits(start..end).is_ok() {
        return Ok(end);
    }
    fits(start..start + 1)?;
    // `start..lo` fits, `start..hi` does not.
    let (mut lo, mut hi) = (start + 1, end);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(start..mid).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// "one row", "12 rows".
fn count(n: usize, unit: &str) -> String {
    if n == 1 {
        format!("one {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

impl WgpuBackend {
    /// The byte offset and size that bind `v`, and the element its window starts at (what `at`
    /// subtracts). A window starts at the element aligned down to the device's offset alignment;
    /// an empty one binds the first element, which the kernel then does not read.
    fn binding(&self, v: &View<'_>) -> (u64, u64, usize) {
        let Some(r) = &v.elems else {
            return (0, v.buf.size(), 0);
        };
        let capacity = (v.buf.size() / 4) as usize;
        let (start, end) = (r.start.min(capacity), r.end.min(capacity));
        if start >= end {
            return (0, 4, 0);
        }
        let align = self.ctx.limits.align;
        let offset = start as u64 * 4 / align * align;
        (offset, end as u64 * 4 - offset, (offset / 4) as usize)
    }

    /// The bytes binding `v` takes.
    pub(super) fn binding_size(&self, v: &View<'_>) -> u64 {
        self.binding(v).1
    }

    /// Bytes one storage binding may cover.
    pub(super) fn max_binding(&self) -> u64 {
        self.ctx.limits.max_binding
    }

    /// Workgroups one dispatch may have (a grid folded into x and y).
    pub(super) fn max_dispatch(&self) -> usize {
        let m = self.ctx.limits.max_groups as usize;
        m.saturating_mul(m)
    }

    /// An error naming `op` unless `v` fits in one storage binding.
    fn check_binding(&self, op: &'static str, v: &View<'_>) -> Result<()> {
        let size = self.binding_size(v);
        let limit = self.max_binding();
        if size <= limit {
            return Ok(());
        }
        let what = if v.elems.is_none() {
            "a buffer this kernel binds whole"
        } else {
            "a window"
        };
        Err(Error::invalid(
            op,
            format!(
                "{what} of {size} bytes exceeds the device's storage binding limit of {limit} bytes"
            ),
        ))
    }

    /// A grid of `count` workgroups folded into x and y so neither exceeds the device's limit;
    /// shaders number their workgroup `id.x + id.y · num_workgroups.x` (`group_index`) and skip
    /// those past their work.
    fn grid(&self, op: &'static str, count: usize) -> Result<[u32; 3]> {
        let max = self.ctx.limits.max_groups as usize;
        let x = count.clamp(1, max);
        let y = count.div_ceil(x);
        if y > max {
            return Err(Error::invalid(
                op,
                format!(
                    "{count} workgroups exceed the device's dispatch limit of {}",
                    self.max_dispatch()
                ),
            ));
        }
        Ok([x as u32, y as u32, 1])
    }

    /// Runs `k` over `work` in as many dispatches as the device's limits need: each chunk of
    /// units binds the windows of `inputs` (read-only) and `outputs` (read-write) it touches. An
    /// `InvalidArgument` error naming `op` when a buffer bound whole, or what a single unit
    /// touches, exceeds one binding.
    pub(crate) fn launch(
        &self,
        op: &'static str,
        k: Kernel<'_>,
        inputs: &[Arg<'_>],
        outputs: &[Arg<'_>],
        params: &[u32],
        work: &Work<'_>,
    ) -> Result<()> {
        for u in self.chunks(op, inputs, outputs, work)? {
            let (range, groups) = work.chunk(u.clone());
            let ins: Vec<View<'_>> = inputs.iter().map(|a| a.view(u.clone())).collect();
            let outs: Vec<View<'_>> = outputs.iter().map(|a| a.view(u.clone())).collect();
            self.dispatch(op, k, &ins, &outs, params, range, groups)?;
        }
        Ok(())
    }

    /// The chunks of units `launch` dispatches `work` in: the longest runs whose windows of
    /// `inputs` and `outputs` each fit one binding and whose workgroups fit one dispatch. Errors
    /// as `launch`.
    pub(crate) fn chunks(
        &self,
        op: &'static str,
        inputs: &[Arg<'_>],
        outputs: &[Arg<'_>],
        work: &Work<'_>,
    ) -> Result<Vec<Range<usize>>> {
        let args = || inputs.iter().chain(outputs);
        for a in args() {
            if let Span::Whole = a.span {
                self.check_binding(op, &View::whole(a.buf))?;
            }
        }
        let limit = self.max_binding();
        let fits = |u: Range<usize>| -> Result<()> {
            let (_, groups) = (work.chunk)(u.clone());
            if groups > self.max_dispatch() {
                return Err(Error::invalid(
                    op,
                    format!(
                        "{} need {groups} workgroups, more than the device's dispatch limit of {}",
                        count(u.len(), work.unit),
                        self.max_dispatch()
                    ),
                ));
            }
            for a in args().filter(|a| !matches!(a.span, Span::Whole)) {
                let size = self.binding_size(&a.view(u.clone()));
                if size > limit {
                    return Err(Error::invalid(
                        op,
                        format!(
                            "{} touch {size} bytes of one buffer, more than the device's \
                             storage binding limit of {limit} bytes",
                            count(u.len(), work.unit)
                        ),
                    ));
                }
            }
            Ok(())
        };
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < work.units {
            let end = longest(start, work.units, fits)?;
            chunks.push(start..end);
            start = end;
        }
        Ok(chunks)
    }

    /// Records one dispatch of `k` over `groups` workgroups on the range `range` of its split
    /// index, with its storage views (inputs read-only, then outputs read-write) and uniform
    /// parameter words.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dispatch(
        &self,
        op: &'static str,
        k: Kernel<'_>,
        inputs: &[View<'_>],
        outputs: &[View<'_>],
        params: &[u32],
        range: Range<usize>,
        groups: usize,
    ) -> Result<()> {
        if groups == 0 {
            return Ok(());
        }
        let bindings = inputs.len() + outputs.len();
        if bindings > MAX_BINDINGS {
            return Err(backend_error(format!(
                "{op}: {bindings} storage bindings, more than {MAX_BINDINGS}"
            )));
        }
        let grid = self.grid(op, groups)?;
        let pipeline = self.pipeline(&k, inputs.len(), outputs.len())?;
        // `Window`: first, end, two words of padding, then the offsets of 8 bindings.
        let mut window = vec![word(op, range.start)?, word(op, range.end)?, 0, 0];
        let mut entries = Vec::with_capacity(bindings + 1);
        for (i, v) in inputs.iter().chain(outputs).enumerate() {
            self.check_binding(op, v)?;
            let (offset, size, first) = self.binding(v);
            window.push(word(op, first)?);
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: v.buf,
                    offset,
                    size: wgpu::BufferSize::new(size),
                }),
            });
        }
        window.resize(4 + MAX_BINDINGS, 0);
        // Uniform blocks are padded to 16 bytes.
        let mut words = params.to_vec();
        words.resize(params.len().div_ceil(4).max(1) * 4, 0);
        let uniform = |data: &[u32]| {
            self.device()
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::UNIFORM,
                })
        };
        let params = uniform(&words);
        let window = uniform(&window);
        entries.push(wgpu::BindGroupEntry {
            binding: bindings as u32,
            resource: params.as_entire_binding(),
        });
        let group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        });
        let window_group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.ctx.window_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: window.as_entire_binding(),
            }],
        });
        self.record(|encoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(k.entry),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.set_bind_group(1, &window_group, &[]);
            pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        });
        Ok(())
    }
}

/// A sliding window along the rows of NHWC tensors (convolution, pooling): output row `o`
/// covers input rows `o·stride − pad .. o·stride − pad + extent`, clipped to the input, where
/// `extent = (kernel − 1)·dilation + 1`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slide {
    pub in_rows: usize,
    pub out_rows: usize,
    pub stride: usize,
    pub pad: usize,
    pub extent: usize,
}

impl Slide {
    /// The input rows the output rows `o` cover.
    pub fn inputs(&self, o: Range<usize>) -> Range<usize> {
        let start = (o.start * self.stride)
            .saturating_sub(self.pad)
            .min(self.in_rows);
        if o.is_empty() {
            return start..start;
        }
        let end = ((o.end - 1) * self.stride + self.extent)
            .saturating_sub(self.pad)
            .min(self.in_rows);
        start..end.max(start)
    }

    /// The output rows whose windows cover some of the input rows `i`.
    pub fn outputs(&self, i: Range<usize>) -> Range<usize> {
        let s = self.stride;
        // The first o with o·s − pad + extent > i.start, the first with o·s − pad >= i.end.
        let start = ((i.start + self.pad + 1).saturating_sub(self.extent))
            .div_ceil(s)
            .min(self.out_rows);
        let end = (i.end + self.pad).div_ceil(s).min(self.out_rows);
        start..end.max(start)
    }
}

/// The elements of a tensor of `rows` rows of `row_len` elements per sample that units `u`
/// touch, where the units are (sample, row) pairs of the kernel's own row axis (`unit_rows` per
/// sample) and the unit row `r` touches the rows `map(r)` of the same sample (`map` growing
/// with `r`).
pub(super) fn sample_rows(
    u: Range<usize>,
    unit_rows: usize,
    rows: usize,
    row_len: usize,
    map: impl Fn(usize) -> Range<usize>,
) -> Range<usize> {
    if u.is_empty() {
        return 0..0;
    }
    let last = u.end - 1;
    let start = (u.start / unit_rows * rows + map(u.start % unit_rows).start) * row_len;
    let end = (last / unit_rows * rows + map(last % unit_rows).end) * row_len;
    start..end.max(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_takes_the_longest_fitting_chunk() {
        let fits = |r: Range<usize>| if r.len() <= 3 { Ok(()) } else { Err(r.len()) };
        assert_eq!(longest(0, 10, fits), Ok(3));
        assert_eq!(longest(8, 10, fits), Ok(10));
        let never = |r: Range<usize>| Err::<(), _>(r.start);
        assert_eq!(longest(4, 10, never), Err(4));
    }

    #[test]
    fn slides_cover_the_rows_their_windows_read() {
        // 3×3, stride 2, padding 1 over 7 rows: outputs 0..4 read rows [0,2), [1,4), [3,6), [5,7).
        let s = Slide {
            in_rows: 7,
            out_rows: 4,
            stride: 2,
            pad: 1,
            extent: 3,
        };
        assert_eq!(s.inputs(0..1), 0..2);
        assert_eq!(s.inputs(1..3), 1..6);
        assert_eq!(s.inputs(3..4), 5..7);
        assert_eq!(s.outputs(0..1), 0..1);
        assert_eq!(s.outputs(3..4), 1..3);
        assert_eq!(s.outputs(6..7), 3..4);
        // 2×2 windows of stride 3: row 2 is in no window.
        let gap = Slide {
            in_rows: 6,
            out_rows: 2,
            stride: 3,
            pad: 0,
            extent: 2,
        };
        assert_eq!(gap.outputs(2..3), 1..1);
        assert_eq!(gap.inputs(gap.outputs(2..3)), 3..3);
    }

    #[test]
    fn sample_rows_span_samples() {
        // Rows of 10 elements, 4 rows per sample, each unit row its own row.
        assert_eq!(sample_rows(1..3, 4, 4, 10, |r| r..r + 1), 10..30);
        assert_eq!(sample_rows(3..6, 4, 4, 10, |r| r..r + 1), 30..60);
    }
}
