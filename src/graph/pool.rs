//! The device buffers of a plan: lent for each value, gradient and temporary of a step, taken
//! back when that tensor is dead, and laid out anew once the steps repeat.

use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::{Shape, TensorDesc};

/// What a lent buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// The value of a node.
    Value(usize),
    /// The gradient of a node.
    Grad(usize),
    /// A temporary of a node's backward, for its input `.1`.
    Scratch(usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Lend(Use, usize),
    Return(Use),
}

/// Buffers assigned to the lendings of a step that later steps repeat event for event.
struct Layout<B: Backend> {
    events: Vec<Event>,
    /// The slot of each lending, in order.
    slot_of: Vec<usize>,
    /// Slot buffers not lent now.
    slots: Vec<Option<B::Buffer>>,
}

/// Lends buffers for a plan's steps.
///
/// The first steps lend the smallest free buffer with room (on backends that can shorten a
/// buffer in place, else one of exactly the length) or a new one. When a step lends and takes
/// back exactly as the one before it did, every lending's lifetime is known, and the pool lays
/// them out once: largest first, each into the first buffer free for its whole lifetime (the
/// "greedy by size" assignment of inference engines), so tensors of different sizes that are
/// never alive together share memory. Later steps that repeat those events allocate nothing;
/// one that departs from them (another mode, other outputs kept) goes back to the free list.
pub(crate) struct BufferPool<B: Backend> {
    /// Free buffers with their capacities, outside a layout.
    free: Vec<(usize, B::Buffer)>,
    layout: Option<Layout<B>>,
    /// This step's events, and the previous step's.
    events: Vec<Event>,
    previous: Vec<Event>,
    /// Lendings of this step so far.
    lent_count: usize,
    /// Buffers lent from layout slots, by use.
    lent_slots: Vec<(Use, usize)>,
}

impl<B: Backend> BufferPool<B> {
    pub(crate) fn new() -> Self {
        BufferPool {
            free: Vec::new(),
            layout: None,
            events: Vec::new(),
            previous: Vec::new(),
            lent_count: 0,
            lent_slots: Vec::new(),
        }
    }

    /// A buffer of `shape`'s element count for `what` (holding stale data, which every kernel
    /// overwrites).
    pub(crate) fn lend(&mut self, backend: &B, shape: &Shape, what: Use) -> Result<B::Buffer> {
        let len = shape.numel();
        let event = Event::Lend(what, len);
        if self.next_in_layout(event) {
            let layout = self.layout.as_mut().expect("following a layout");
            let slot = layout.slot_of[self.lent_count];
            if let Some(mut buf) = layout.slots[slot].take() {
                if backend.reuse_as(&mut buf, len) {
                    self.events.push(event);
                    self.lent_count += 1;
                    self.lent_slots.push((what, slot));
                    return Ok(buf);
                }
                layout.slots[slot] = Some(buf);
            }
        }
        self.leave_layout(backend);
        self.events.push(event);
        self.lent_count += 1;
        let mut fitting: Vec<usize> = (0..self.free.len())
            .filter(|&i| self.free[i].0 >= len)
            .collect();
        fitting.sort_by_key(|&i| self.free[i].0);
        for i in fitting {
            if backend.reuse_as(&mut self.free[i].1, len) {
                return Ok(self.free.swap_remove(i).1);
            }
        }
        backend.alloc(&TensorDesc::f32(shape.clone()))
    }

    /// Takes back the buffer lent for `what`.
    pub(crate) fn take_back(&mut self, backend: &B, buf: B::Buffer, what: Use) {
        let event = Event::Return(what);
        if !self.next_in_layout(event) {
            self.leave_layout(backend);
        }
        self.events.push(event);
        match self.lent_slots.iter().position(|&(u, _)| u == what) {
            Some(i) => {
                let (_, slot) = self.lent_slots.swap_remove(i);
                let layout = self.layout.as_mut().expect("slots are lent from a layout");
                layout.slots[slot] = Some(buf);
            }
            None => self.free.push((backend.capacity(&buf), buf)),
        }
    }

    /// Ends a step (every buffer is back): lays the buffers out when this step repeated the
    /// previous one and no layout holds yet.
    pub(crate) fn step_done(&mut self, backend: &B) -> Result<()> {
        let events = std::mem::take(&mut self.events);
        self.lent_count = 0;
        let following = self.layout.as_ref().is_some_and(|l| l.events == events);
        if !following && !events.is_empty() && events == self.previous {
            self.free.clear();
            self.layout = None;
            self.layout = Some(lay_out(backend, &events)?);
        }
        self.previous = events;
        Ok(())
    }

    /// Whether this step has followed the layout so far and `event` comes next in it.
    fn next_in_layout(&self, event: Event) -> bool {
        let next = self
            .layout
            .as_ref()
            .and_then(|l| l.events.get(self.events.len()));
        next == Some(&event)
    }

    /// Leaves the layout for the rest of the step: its free slots join the free list, and
    /// buffers lent from it come back there.
    fn leave_layout(&mut self, backend: &B) {
        if let Some(layout) = self.layout.take() {
            for buf in layout.slots.into_iter().flatten() {
                self.free.push((backend.capacity(&buf), buf));
            }
            self.lent_slots.clear();
        }
    }

    /// Elements the buffers not lent now have room for.
    pub(crate) fn elements(&self, backend: &B) -> usize {
        let slots = self.layout.iter().flat_map(|l| l.slots.iter().flatten());
        let in_slots: usize = slots.map(|b| backend.capacity(b)).sum();
        in_slots
            + self
                .free
                .iter()
                .map(|(capacity, _)| capacity)
                .sum::<usize>()
    }
}

/// Assigns each lending of `events` to a buffer, largest first, each into the first buffer
/// (of exactly its length where the backend cannot shorten buffers) whose lendings so far do
/// not overlap its lifetime, and allocates the buffers.
fn lay_out<B: Backend>(backend: &B, events: &[Event]) -> Result<Layout<B>> {
    // (length, first event, event it is returned at) of each lending, in order.
    let mut lendings: Vec<(usize, usize, usize)> = Vec::new();
    for (at, event) in events.iter().enumerate() {
        if let Event::Lend(what, len) = *event {
            let back = events[at..]
                .iter()
                .position(|e| *e == Event::Return(what))
                .map_or(events.len(), |p| at + p);
            lendings.push((len, at, back));
        }
    }
    let mut order: Vec<usize> = (0..lendings.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(lendings[k].0));
    let shrinks = backend.shrinks_in_place();
    // Capacity and the lifetimes assigned so far, per slot.
    let mut slots: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
    let mut slot_of = vec![0; lendings.len()];
    for k in order {
        let (len, start, end) = lendings[k];
        let fits = |(capacity, lives): &(usize, Vec<(usize, usize)>)| {
            (*capacity == len || shrinks && *capacity > len)
                && lives.iter().all(|&(s, e)| e <= start || end <= s)
        };
        slot_of[k] = match slots.iter().position(fits) {
            Some(s) => s,
            None => {
                slots.push((len, Vec::new()));
                slots.len() - 1
            }
        };
        slots[slot_of[k]].1.push((start, end));
    }
    let buffers = slots
        .iter()
        .map(|&(capacity, _)| backend.alloc(&TensorDesc::f32([capacity])).map(Some))
        .collect::<Result<Vec<_>>>()?;
    Ok(Layout {
        events: events.to_vec(),
        slot_of,
        slots: buffers,
    })
}
