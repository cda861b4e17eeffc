//! HDF5 files: N-d datasets of `f32`, `f64`, `u8` and `i64` in nested groups, attributes (numbers
//! and strings), partial reads of rows so a data set larger than memory streams batch by batch,
//! and chunked gzip-compressed writes.
//!
//! Dataset and group names are `/`-separated paths (`"model/conv.weight"`); names may contain dots.
//! [`H5Writer`] writes to a temporary file in the target's directory and renames it over the
//! target only in [`H5Writer::finish`], so an existing file survives a failed or abandoned write.
//! Every error is an [`Error::Hdf5`] (or [`Error::Io`]) naming the file and what was wrong.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenUnicode};

use crate::error::{Error, Result};
use crate::tensor::{HostTensor, Shape};

/// The element types magnet reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    F32,
    F64,
    U8,
    I64,
}

impl ElementType {
    fn of(desc: &TypeDescriptor) -> Option<Self> {
        match desc {
            TypeDescriptor::Float(FloatSize::U4) => Some(ElementType::F32),
            TypeDescriptor::Float(FloatSize::U8) => Some(ElementType::F64),
            TypeDescriptor::Unsigned(IntSize::U1) => Some(ElementType::U8),
            TypeDescriptor::Integer(IntSize::U8) => Some(ElementType::I64),
            _ => None,
        }
    }

    /// NumPy's name of the type (`float32`, ...), as error messages show it.
    pub fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "float32",
            ElementType::F64 => "float64",
            ElementType::U8 => "uint8",
            ElementType::I64 => "int64",
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for u8 {}
    impl Sealed for i64 {}
}

/// An element type of a dataset: `f32`, `f64`, `u8` or `i64`.
pub trait Element: hdf5::H5Type + Copy + sealed::Sealed + 'static {
    /// The matching [`ElementType`].
    const TYPE: ElementType;
}

impl Element for f32 {
    const TYPE: ElementType = ElementType::F32;
}
impl Element for f64 {
    const TYPE: ElementType = ElementType::F64;
}
impl Element for u8 {
    const TYPE: ElementType = ElementType::U8;
}
impl Element for i64 {
    const TYPE: ElementType = ElementType::I64;
}

/// An attribute value: a number, a string, or a 1-D array of them.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Int(i64),
    /// An unsigned 64-bit integer (seeds, step counts).
    UInt(u64),
    Float(f64),
    Str(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Strs(Vec<String>),
}

impl AttrValue {
    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            AttrValue::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The integer as u64, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            AttrValue::UInt(v) => Some(v),
            AttrValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The number as f64, if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            AttrValue::Int(v) => Some(v as f64),
            AttrValue::UInt(v) => Some(v as f64),
            AttrValue::Float(v) => Some(v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        AttrValue::Int(v)
    }
}
impl From<u64> for AttrValue {
    fn from(v: u64) -> Self {
        AttrValue::UInt(v)
    }
}
impl From<f64> for AttrValue {
    fn from(v: f64) -> Self {
        AttrValue::Float(v)
    }
}
impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        AttrValue::Str(v.to_string())
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        AttrValue::Str(v)
    }
}

/// Attributes of one object, by name.
pub type Attributes = BTreeMap<String, AttrValue>;

/// How a dataset is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOptions {
    /// Chunk along the first axis by this many rows (each chunk holds whole rows); needed for
    /// compression and for fast partial reads of big data sets. `None`: contiguous, unless
    /// `gzip` asks for chunks, then HDF5 picks a chunk shape.
    pub chunk_rows: Option<usize>,
    /// Gzip (deflate) level 0–9, with byte shuffling; `None`: uncompressed.
    pub gzip: Option<u8>,
}

impl WriteOptions {
    /// Chunks of `rows` rows compressed with gzip `level`.
    pub fn gzip(rows: usize, level: u8) -> Self {
        WriteOptions {
            chunk_rows: Some(rows),
            gzip: Some(level),
        }
    }
}

/// An `Error::Hdf5` for `path`.
pub(crate) fn h5_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Hdf5 {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The HDF5 signature; a file starts with it, or has it at 512, 1024, 2048, ... after a user block.
const SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

/// Why HDF5 could not open `path`: not HDF5 at all, or HDF5 but truncated / damaged.
fn open_failure(path: &Path, err: &hdf5::Error) -> Error {
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(1 << 16).read_to_end(&mut head));
    if let Err(source) = read {
        return Error::Io {
            path: path.to_path_buf(),
            source,
        };
    }
    let has_signature = [0usize, 512, 1024, 2048, 4096, 8192, 16384, 32768]
        .iter()
        .any(|&at| head.get(at..at + 8) == Some(&SIGNATURE[..]));
    if has_signature {
        h5_error(path, format!("truncated or damaged HDF5 file ({err})"))
    } else if head.is_empty() {
        h5_error(path, "not an HDF5 file (it is empty)")
    } else {
        h5_error(path, "not an HDF5 file (no HDF5 signature)")
    }
}

/// Reads datasets and attributes of one HDF5 file.
pub struct H5Reader {
    file: hdf5::File,
    path: PathBuf,
}

impl std::fmt::Debug for H5Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5Reader")
            .field("path", &self.path)
            .finish()
    }
}

impl H5Reader {
    /// Opens `path` read-only; errors name the file and say whether it is missing, not HDF5 or
    /// truncated.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // The system's reason (no such file, permission denied) is clearer than HDF5's.
        std::fs::File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        match hdf5::File::open(&path) {
            Ok(file) => Ok(H5Reader { file, path }),
            Err(e) => Err(open_failure(&path, &e)),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        h5_error(&self.path, reason)
    }

    /// Whether an object (group or dataset) called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        let mut prefix = String::new();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !self.file.link_exists(&prefix) {
                return false;
            }
        }
        !prefix.is_empty()
    }

    /// Whether `name` is a group (the root is `""` or `"/"`).
    pub fn is_group(&self, name: &str) -> bool {
        is_root(name) || (self.contains(name) && self.file.group(name).is_ok())
    }

    /// The names of the members (groups and datasets) of group `group`, sorted.
    pub fn members(&self, group: &str) -> Result<Vec<String>> {
        let g = self.group(group)?;
        let mut names = g
            .member_names()
            .map_err(|e| self.err(format!("group '{group}': {e}")))?;
        names.sort();
        Ok(names)
    }

    /// The names of the datasets directly in group `group`, sorted.
    pub fn datasets(&self, group: &str) -> Result<Vec<String>> {
        let g = self.group(group)?;
        let mut names = Vec::new();
        for name in self.members(group)? {
            if g.dataset(&name).is_ok() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn group(&self, name: &str) -> Result<hdf5::Group> {
        if is_root(name) {
            return self
                .file
                .group("/")
                .map_err(|e| self.err(format!("root group: {e}")));
        }
        if !self.contains(name) {
            return Err(self.err(format!("missing group '{name}'")));
        }
        self.file
            .group(name)
            .map_err(|_| self.err(format!("'{name}' is not a group")))
    }

    fn dataset(&self, name: &str) -> Result<hdf5::Dataset> {
        if !self.contains(name) {
            return Err(self.err(format!("missing dataset '{name}'")));
        }
        self.file
            .dataset(name)
            .map_err(|_| self.err(format!("'{name}' is not a dataset")))
    }

    /// The shape of dataset `name`.
    pub fn shape(&self, name: &str) -> Result<Shape> {
        Ok(Shape::new(self.dataset(name)?.shape()))
    }

    /// The element type of dataset `name`; an error for types magnet does not read.
    pub fn element_type(&self, name: &str) -> Result<ElementType> {
        let ds = self.dataset(name)?;
        self.type_of(&ds, name)
    }

    fn type_of(&self, ds: &hdf5::Dataset, name: &str) -> Result<ElementType> {
        let desc = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| self.err(format!("dataset '{name}': unreadable type ({e})")))?;
        ElementType::of(&desc).ok_or_else(|| {
            self.err(format!(
                "dataset '{name}' has unsupported element type {desc}"
            ))
        })
    }

    fn checked<T: Element>(&self, name: &str) -> Result<hdf5::Dataset> {
        let ds = self.dataset(name)?;
        let found = self.type_of(&ds, name)?;
        if found != T::TYPE {
            return Err(self.err(format!(
                "dataset '{name}' holds {}, expected {}",
                found.name(),
                T::TYPE.name()
            )));
        }
        Ok(ds)
    }

    /// The whole of dataset `name` (row-major) with its shape; the element type must be `T`.
    pub fn read<T: Element>(&self, name: &str) -> Result<(Shape, Vec<T>)> {
        let ds = self.checked::<T>(name)?;
        let data = ds
            .read_raw::<T>()
            .map_err(|e| self.err(format!("dataset '{name}': {e}")))?;
        Ok((Shape::new(ds.shape()), data))
    }

    /// Rows `rows` of the first axis of dataset `name` (a hyperslab), with their shape
    /// `[rows.len(), ...]`; only those rows are read from the file.
    pub fn read_rows<T: Element>(&self, name: &str, rows: Range<usize>) -> Result<(Shape, Vec<T>)> {
        let ds = self.checked::<T>(name)?;
        let mut dims = ds.shape();
        if dims.is_empty() {
            return Err(self.err(format!("dataset '{name}' is a scalar and has no rows")));
        }
        if rows.start > rows.end || rows.end > dims[0] {
            return Err(self.err(format!(
                "dataset '{name}': rows {}..{} out of 0..{}",
                rows.start, rows.end, dims[0]
            )));
        }
        dims[0] = rows.len();
        if rows.is_empty() {
            return Ok((Shape::new(dims), Vec::new()));
        }
        let mut slices = vec![hdf5::SliceOrIndex::from(rows.clone())];
        slices.extend((1..dims.len()).map(|_| hdf5::SliceOrIndex::from(..)));
        let selection = hdf5::Selection::from(hdf5::Hyperslab::from(slices));
        let array = ds
            .read_slice::<T, _, ndarray::IxDyn>(selection)
            .map_err(|e| self.err(format!("dataset '{name}' rows {rows:?}: {e}")))?;
        let (data, _) = array.into_raw_vec_and_offset();
        Ok((Shape::new(dims), data))
    }

    /// Dataset `name` as an f32 [`HostTensor`]; the dataset must hold float32.
    pub fn read_tensor(&self, name: &str) -> Result<HostTensor> {
        let (shape, data) = self.read::<f32>(name)?;
        HostTensor::new(shape, data)
    }

    /// Dataset `name` as an f32 tensor, checking that its shape is `expected`.
    pub fn read_tensor_shaped(&self, name: &str, expected: &Shape) -> Result<HostTensor> {
        let shape = self.shape(name)?;
        if &shape != expected {
            return Err(self.err(format!(
                "dataset '{name}' has shape {shape}, expected {expected}"
            )));
        }
        self.read_tensor(name)
    }

    /// All attributes of `object` (a group or dataset path; `""` or `"/"` for the file).
    pub fn attrs(&self, object: &str) -> Result<Attributes> {
        let loc = self.location(object)?;
        let names = loc
            .attr_names()
            .map_err(|e| self.err(format!("attributes of '{object}': {e}")))?;
        names
            .into_iter()
            .map(|n| Ok((n.clone(), self.read_attr(&loc, object, &n)?)))
            .collect()
    }

    /// Attribute `name` of `object`, or `None` when it has no such attribute.
    pub fn attr(&self, object: &str, name: &str) -> Result<Option<AttrValue>> {
        let loc = self.location(object)?;
        let names = loc
            .attr_names()
            .map_err(|e| self.err(format!("attributes of '{object}': {e}")))?;
        if !names.iter().any(|n| n == name) {
            return Ok(None);
        }
        self.read_attr(&loc, object, name).map(Some)
    }

    fn location(&self, object: &str) -> Result<hdf5::Location> {
        if is_root(object) || self.is_group(object) {
            let group = self.group(object)?;
            return Ok(hdf5::Location::clone(&group));
        }
        let ds = self.dataset(object)?;
        Ok(hdf5::Location::clone(&ds))
    }

    fn read_attr(&self, loc: &hdf5::Location, object: &str, name: &str) -> Result<AttrValue> {
        let fail = |e: hdf5::Error| self.err(format!("attribute '{name}' of '{object}': {e}"));
        let attr = loc.attr(name).map_err(fail)?;
        let desc = attr.dtype().and_then(|t| t.to_descriptor()).map_err(fail)?;
        let scalar = attr.ndim() == 0;
        let value = match desc {
            TypeDescriptor::Unsigned(IntSize::U8) if scalar => {
                AttrValue::UInt(attr.read_scalar::<u64>().map_err(fail)?)
            }
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Boolean
                if scalar =>
            {
                AttrValue::Int(attr.read_scalar::<i64>().map_err(fail)?)
            }
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
                AttrValue::Ints(attr.read_raw::<i64>().map_err(fail)?)
            }
            TypeDescriptor::Float(_) if scalar => {
                AttrValue::Float(attr.read_scalar::<f64>().map_err(fail)?)
            }
            TypeDescriptor::Float(_) => AttrValue::Floats(attr.read_raw::<f64>().map_err(fail)?),
            TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii if scalar => {
                AttrValue::Str(
                    attr.read_scalar::<VarLenUnicode>()
                        .map_err(fail)?
                        .to_string(),
                )
            }
            TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii => AttrValue::Strs(
                attr.read_raw::<VarLenUnicode>()
                    .map_err(fail)?
                    .into_iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            other => {
                return Err(self.err(format!(
                    "attribute '{name}' of '{object}' has unsupported type {other}"
                )))
            }
        };
        Ok(value)
    }
}

fn is_root(name: &str) -> bool {
    name.is_empty() || name == "/"
}

/// Writes an HDF5 file atomically: everything goes to a temporary file next to the target, which
/// [`H5Writer::finish`] renames over it. Dropping the writer without finishing removes the
/// temporary file and leaves any existing target untouched.
pub struct H5Writer {
    file: Option<hdf5::File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl std::fmt::Debug for H5Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H5Writer")
            .field("path", &self.path)
            .finish()
    }
}

impl H5Writer {
    /// Starts writing `path` (through a temporary file in the same directory).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = path.as_ref().to_path_buf();
        let file_name = path
            .file_name()
            .ok_or_else(|| h5_error(&path, "not a file name"))?
            .to_string_lossy()
            .into_owned();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(
            ".{file_name}.{}.{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Created here first so a missing or read-only directory is reported by the system.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        match hdf5::File::create(&tmp) {
            Ok(file) => Ok(H5Writer {
                file: Some(file),
                tmp,
                path,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(h5_error(&path, format!("cannot create an HDF5 file: {e}")))
            }
        }
    }

    /// The target path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        h5_error(&self.path, reason)
    }

    fn file(&self) -> Result<&hdf5::File> {
        self.file
            .as_ref()
            .ok_or_else(|| self.err("the writer is already finished"))
    }

    /// Creates group `name` and any missing parents (nothing if it exists).
    pub fn create_group(&self, name: &str) -> Result<()> {
        let file = self.file()?;
        let mut prefix = String::new();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if !file.link_exists(&prefix) {
                file.create_group(&prefix)
                    .map_err(|e| self.err(format!("group '{prefix}': {e}")))?;
            }
        }
        Ok(())
    }

    /// Writes dataset `name` (parent groups are created) of `shape` from row-major `data`.
    pub fn write<T: Element>(
        &self,
        name: &str,
        shape: &[usize],
        data: &[T],
        options: WriteOptions,
    ) -> Result<()> {
        let expected: usize = shape.iter().product();
        if data.len() != expected {
            return Err(self.err(format!(
                "dataset '{name}': {} values for shape {}",
                data.len(),
                Shape::new(shape)
            )));
        }
        let ds = self.create_dataset::<T>(name, shape, options)?;
        ds.write_raw(data)
            .map_err(|e| self.err(format!("dataset '{name}': {e}")))
    }

    /// Writes an f32 tensor as dataset `name`.
    pub fn write_tensor(&self, name: &str, t: &HostTensor, options: WriteOptions) -> Result<()> {
        self.write(name, t.shape().dims(), t.data(), options)
    }

    /// Writes a scalar dataset.
    pub fn write_scalar<T: Element>(&self, name: &str, value: T) -> Result<()> {
        self.write(name, &[], &[value], WriteOptions::default())
    }

    /// Creates dataset `name` of `shape` without data, to be filled by [`H5Writer::write_rows`]
    /// (for data sets written batch by batch).
    pub fn create_empty<T: Element>(
        &self,
        name: &str,
        shape: &[usize],
        options: WriteOptions,
    ) -> Result<()> {
        self.create_dataset::<T>(name, shape, options).map(|_| ())
    }

    /// Writes rows `start..start + n` of the first axis of dataset `name` from `data`, which
    /// holds `n` whole rows.
    pub fn write_rows<T: Element>(&self, name: &str, start: usize, data: &[T]) -> Result<()> {
        let file = self.file()?;
        let ds = file
            .dataset(name)
            .map_err(|_| self.err(format!("missing dataset '{name}'")))?;
        let mut dims = ds.shape();
        if dims.is_empty() {
            return Err(self.err(format!("dataset '{name}' is a scalar and has no rows")));
        }
        let row: usize = dims[1..].iter().product();
        if row == 0 || data.len() % row != 0 || start + data.len() / row > dims[0] {
            return Err(self.err(format!(
                "dataset '{name}' of shape {}: {} values do not fill whole rows from row {start}",
                Shape::new(dims),
                data.len()
            )));
        }
        let n = data.len() / row;
        if n == 0 {
            return Ok(());
        }
        dims[0] = n;
        let view = ndarray::ArrayViewD::from_shape(dims.clone(), data)
            .map_err(|e| self.err(format!("dataset '{name}': {e}")))?;
        let mut slices = vec![hdf5::SliceOrIndex::from(start..start + n)];
        slices.extend((1..dims.len()).map(|_| hdf5::SliceOrIndex::from(..)));
        let selection = hdf5::Selection::from(hdf5::Hyperslab::from(slices));
        ds.write_slice(&view, selection)
            .map_err(|e| self.err(format!("dataset '{name}' rows from {start}: {e}")))
    }

    fn create_dataset<T: Element>(
        &self,
        name: &str,
        shape: &[usize],
        options: WriteOptions,
    ) -> Result<hdf5::Dataset> {
        let file = self.file()?;
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.create_group(parent)?;
        }
        let mut builder = file.new_dataset::<T>().shape(shape.to_vec());
        if let Some(rows) = options.chunk_rows {
            if shape.is_empty() || rows == 0 {
                return Err(self.err(format!(
                    "dataset '{name}': cannot chunk shape {} by {rows} rows",
                    Shape::new(shape)
                )));
            }
            let mut chunk = shape.to_vec();
            chunk[0] = rows.min(shape[0]).max(1);
            for d in &mut chunk[1..] {
                *d = (*d).max(1);
            }
            builder = builder.chunk(chunk);
        }
        if let Some(level) = options.gzip {
            if shape.is_empty() {
                return Err(self.err(format!("dataset '{name}': a scalar cannot be compressed")));
            }
            if !hdf5::filters::deflate_available() {
                return Err(self.err("this libhdf5 has no gzip (deflate) filter"));
            }
            builder = builder.shuffle().deflate(level.min(9));
        }
        builder
            .create(name)
            .map_err(|e| self.err(format!("dataset '{name}': {e}")))
    }

    /// Sets attribute `name` of `object` (a group or dataset path; `""` or `"/"` for the file),
    /// replacing an existing one.
    pub fn set_attr(&self, object: &str, name: &str, value: &AttrValue) -> Result<()> {
        let file = self.file()?;
        let loc: hdf5::Location = if is_root(object) {
            hdf5::Location::clone(file)
        } else if let Ok(g) = file.group(object) {
            hdf5::Location::clone(&g)
        } else if let Ok(d) = file.dataset(object) {
            hdf5::Location::clone(&d)
        } else {
            return Err(self.err(format!("attribute '{name}': no object '{object}'")));
        };
        let fail = |e: hdf5::Error| self.err(format!("attribute '{name}' of '{object}': {e}"));
        if loc.attr_names().map_err(fail)?.iter().any(|n| n == name) {
            loc.delete_attr(name).map_err(fail)?;
        }
        let strings = |v: &[String]| -> Result<Vec<VarLenUnicode>> {
            v.iter()
                .map(|s| {
                    s.parse::<VarLenUnicode>()
                        .map_err(|e| self.err(format!("attribute '{name}' of '{object}': {e}")))
                })
                .collect()
        };
        match value {
            AttrValue::Int(v) => loc
                .new_attr::<i64>()
                .create(name)
                .and_then(|a| a.write_scalar(v)),
            AttrValue::UInt(v) => loc
                .new_attr::<u64>()
                .create(name)
                .and_then(|a| a.write_scalar(v)),
            AttrValue::Float(v) => loc
                .new_attr::<f64>()
                .create(name)
                .and_then(|a| a.write_scalar(v)),
            AttrValue::Str(s) => {
                let s = strings(std::slice::from_ref(s))?;
                loc.new_attr::<VarLenUnicode>()
                    .create(name)
                    .and_then(|a| a.write_scalar(&s[0]))
            }
            AttrValue::Ints(v) => loc
                .new_attr::<i64>()
                .shape(v.len())
                .create(name)
                .and_then(|a| a.write_raw(v.as_slice())),
            AttrValue::Floats(v) => loc
                .new_attr::<f64>()
                .shape(v.len())
                .create(name)
                .and_then(|a| a.write_raw(v.as_slice())),
            AttrValue::Strs(v) => {
                let s = strings(v)?;
                loc.new_attr::<VarLenUnicode>()
                    .shape(s.len())
                    .create(name)
                    .and_then(|a| a.write_raw(s.as_slice()))
            }
        }
        .map_err(fail)
    }

    /// Sets every attribute of `attrs` on `object`.
    pub fn set_attrs(&self, object: &str, attrs: &Attributes) -> Result<()> {
        attrs
            .iter()
            .try_for_each(|(name, value)| self.set_attr(object, name, value))
    }

    /// Closes the file, flushes it to disk and renames it over the target.
    pub fn finish(mut self) -> Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| self.err("already finished"))?;
        let result = file
            .close()
            .map_err(|e| self.err(format!("closing the file: {e}")))
            .and_then(|()| {
                std::fs::File::open(&self.tmp)
                    .and_then(|f| f.sync_all())
                    .and_then(|()| std::fs::rename(&self.tmp, &self.path))
                    .map_err(|source| Error::Io {
                        path: self.path.clone(),
                        source,
                    })
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Drop for H5Writer {
    fn drop(&mut self) {
        // Unfinished: the target keeps its old content and the temporary file goes.
        if let Some(file) = self.file.take() {
            drop(file);
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
