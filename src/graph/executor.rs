//! Runs a [`Graph`] on a backend: plans buffers once per set of input shapes, runs forward and
//! backward, and keeps the named tensors (parameters, state) and their gradients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::backend::rng::hash32;
use crate::backend::Backend;
use crate::dist::Collective;
use crate::error::{Error, Result};
use crate::graph::op::{BackwardCtx, ForwardCtx, Mode, Op};
use crate::graph::pool::{BufferPool, Use};
use crate::graph::profile::{Pass, Profile};
use crate::graph::{Graph, NodeId, NodeKind, TensorId, TensorSpec};
use crate::tensor::{HostTensor, Shape, TensorDesc};

/// Buffers for one set of input shapes, allocated by the first step and reused by every later
/// step with those shapes.
struct Plan<B: Backend> {
    /// Unique in the process: names the plan's steps to the backend
    /// ([`crate::backend::Memory::begin_step`]).
    id: u64,
    shapes: Vec<Shape>,
    /// Output of every computed input and op node while it is alive (`None` for parameter nodes,
    /// whose values are tensors, and for values released under [`Executor::keep_only`]).
    values: Vec<Option<B::Buffer>>,
    workspaces: Vec<Vec<B::Buffer>>,
    /// Gradient of every non-parameter node while backward needs it: an op node's is released
    /// once backward has passed the node; an input's stays until the next forward.
    grads: Vec<Option<B::Buffer>>,
    /// Buffers of this plan not in use now.
    pool: BufferPool<B>,
    /// Which nodes the last forward computed.
    computed: Vec<bool>,
    /// Whether the last forward kept what backward reads and no backward has released it since.
    backward_ready: bool,
}

impl<B: Backend> Plan<B> {
    /// Returns every value and gradient to the pool, as a new forward starts.
    fn recycle(&mut self, backend: &B) -> Result<()> {
        for (index, value) in self.values.iter_mut().enumerate() {
            if let Some(buf) = value.take() {
                self.pool.take_back(backend, buf, Use::Value(index));
            }
        }
        for (index, grad) in self.grads.iter_mut().enumerate() {
            if let Some(buf) = grad.take() {
                self.pool.take_back(backend, buf, Use::Grad(index));
            }
        }
        self.pool.step_done(backend)
    }

    /// Returns node `index`'s value, if it holds one, to the pool.
    fn release_value(&mut self, backend: &B, index: usize) {
        if let Some(buf) = self.values[index].take() {
            self.pool.take_back(backend, buf, Use::Value(index));
        }
    }

    /// The gradient buffer of node `index`, taken from the pool at its first use.
    fn grad_buffer(&mut self, backend: &B, index: usize) -> Result<&mut B::Buffer> {
        if self.grads[index].is_none() {
            let grad = self
                .pool
                .lend(backend, &self.shapes[index], Use::Grad(index))?;
            self.grads[index] = Some(grad);
        }
        Ok(self.grads[index].as_mut().unwrap())
    }

    /// Elements the plan's buffers have room for, in use or free.
    fn elements(&self, backend: &B) -> usize {
        let held = self.values.iter().chain(&self.grads).flatten();
        let workspaces = self.workspaces.iter().flatten();
        let room = held.chain(workspaces).map(|b| backend.capacity(b));
        room.sum::<usize>() + self.pool.elements(backend)
    }
}

/// Executes a graph on backend `B`.
pub struct Executor<B: Backend> {
    backend: B,
    graph: Graph<B>,
    tensors: Vec<Option<B::Buffer>>,
    tensor_grads: Vec<Option<B::Buffer>>,
    /// Whether the last backward wrote the gradient of each tensor.
    grad_written: Vec<bool>,
    /// Whether each node depends on something that takes a gradient.
    needs_grad: Vec<bool>,
    /// For each node, the trainable tensors whose gradient is final once backward has passed
    /// it (the node is their earliest consumer).
    final_after: Vec<Vec<TensorId>>,
    /// Whether some backward may read each node's value.
    read_by_backward: Vec<bool>,
    /// Whether backward recomputes each node's value ([`Op::recomputable`]) rather than have a
    /// training forward under `keep_only` keep it.
    recomputed: Vec<bool>,
    /// For each node, the values no backward reads once backward has passed it.
    last_read_by: Vec<Vec<usize>>,
    /// The nodes whose values stay readable after a forward (`None`: all of them).
    keep: Option<Vec<bool>>,
    /// An empty buffer that backward sees in place of a value it does not read.
    released: B::Buffer,
    plans: HashMap<Vec<Shape>, Plan<B>>,
    current: Option<Vec<Shape>>,
    mode: Mode,
    seed: u64,
    step: u64,
    /// Op times, while profiling is on.
    profile: Option<Profile>,
}

impl<B: Backend> Executor<B> {
    /// Takes `graph`, allocates its named tensors on `backend` and initialises them from `seed`
    /// (the same seed gives the same values on every backend).
    pub fn new(backend: B, graph: Graph<B>, seed: u64) -> Result<Self> {
        let mut tensors = Vec::with_capacity(graph.tensors.len());
        let mut tensor_grads = Vec::with_capacity(graph.tensors.len());
        for (index, spec) in graph.tensors.iter().enumerate() {
            let data = spec
                .init
                .generate(spec.shape.numel(), tensor_seed(seed, index));
            tensors.push(Some(
                backend.to_device(&HostTensor::new(spec.shape.clone(), data)?)?,
            ));
            tensor_grads.push(None);
        }
        let needs_grad = needs_grad(&graph);
        let final_after = final_after(&graph);
        let last_reader = last_backward_reader(&graph, &needs_grad);
        let read_by_backward: Vec<bool> = last_reader.iter().map(Option::is_some).collect();
        let recomputed = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| match &node.kind {
                NodeKind::Op { op, .. } => {
                    read_by_backward[index] && needs_grad[index] && op.recomputable()
                }
                _ => false,
            })
            .collect();
        let mut last_read_by = vec![Vec::new(); graph.nodes.len()];
        for (v, reader) in last_reader.into_iter().enumerate() {
            if let Some(reader) = reader {
                last_read_by[reader].push(v);
            }
        }
        let released = backend.alloc(&TensorDesc::f32([0]))?;
        Ok(Executor {
            backend,
            grad_written: vec![false; graph.tensors.len()],
            graph,
            tensors,
            tensor_grads,
            needs_grad,
            final_after,
            read_by_backward,
            recomputed,
            last_read_by,
            keep: None,
            released,
            plans: HashMap::new(),
            current: None,
            mode: Mode::Eval,
            seed,
            step: 0,
            profile: None,
        })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The graph.
    pub fn graph(&self) -> &Graph<B> {
        &self.graph
    }

    /// Runs every node whose inputs are fed (`feeds` pairs input nodes with values); nodes that
    /// depend on an input not fed are skipped and cannot be read. `Mode::Train` uses batch
    /// statistics and dropout and advances the step counter that seeds dropout.
    pub fn forward(&mut self, feeds: &[(NodeId, &HostTensor)], mode: Mode) -> Result<()> {
        self.forward_with(feeds, mode, None)
    }

    /// As [`Executor::forward`], with the ranks of a data-parallel run for ops that synchronise
    /// across them (synchronised batch norm).
    pub fn forward_with(
        &mut self,
        feeds: &[(NodeId, &HostTensor)],
        mode: Mode,
        mut collective: Option<&mut (dyn Collective<B> + 'static)>,
    ) -> Result<()> {
        let mut fed: Vec<Option<&HostTensor>> = vec![None; self.graph.nodes.len()];
        for &(node, value) in feeds {
            self.graph.check_node(node)?;
            match &self.graph.nodes[node.index].kind {
                NodeKind::Input { .. } => fed[node.index] = Some(value),
                _ => {
                    return Err(Error::Graph(format!(
                        "node {} is not an input and cannot be fed",
                        node.index
                    )))
                }
            }
        }
        let key = self.plan_key(&fed);
        if !self.plans.contains_key(&key) {
            let plan = self.make_plan(&key)?;
            self.plans.insert(key.clone(), plan);
        }
        if mode == Mode::Train {
            self.step += 1;
        }
        self.mode = mode;
        // With `keep_only`, values are released after their last forward use unless kept or,
        // in training, read by backward and not recomputed there (backward then releases them).
        let release = self.keep.as_ref().map(|keep| {
            let retained: Vec<bool> = match mode {
                Mode::Train => (0..keep.len())
                    .map(|i| keep[i] || self.read_by_backward[i] && !self.recomputed[i])
                    .collect(),
                Mode::Eval => keep.clone(),
            };
            release_schedule(&self.graph, &fed, &retained)
        });
        let plan = self.plans.get_mut(&key).expect("plan inserted above");
        self.current = Some(key);
        self.backend
            .begin_step(plan.id << 1 | u64::from(mode == Mode::Train));
        plan.recycle(&self.backend)?;
        plan.backward_ready = release.is_none() || mode == Mode::Train;
        plan.computed.iter_mut().for_each(|c| *c = false);
        for (index, value) in fed.iter().enumerate() {
            if let Some(value) = value {
                let mut buf =
                    plan.pool
                        .lend(&self.backend, &plan.shapes[index], Use::Value(index))?;
                self.backend.upload(value.data(), &mut buf)?;
                plan.values[index] = Some(buf);
                plan.computed[index] = true;
            }
        }
        let nodes = self.graph.nodes.len();
        for index in 0..=nodes {
            for &done in release.as_ref().map_or(&[][..], |r| &r[index]) {
                plan.release_value(&self.backend, done);
            }
            if index == nodes {
                break;
            }
            let node = &self.graph.nodes[index];
            let (op, inputs) = match &node.kind {
                NodeKind::Param(_) => {
                    plan.computed[index] = true;
                    continue;
                }
                NodeKind::Input { .. } => continue,
                NodeKind::Op { op, inputs } => (op, inputs),
            };
            if !inputs.iter().all(|i| plan.computed[i.index]) {
                continue;
            }
            let started = start_timing(&self.backend, &self.profile)?;
            let run = NodeRun {
                index,
                mode,
                seed: node_seed(self.seed, self.step, index),
                recompute: false,
            };
            run.run(
                &self.backend,
                &self.graph,
                plan,
                &mut self.tensors,
                collective.as_deref_mut(),
            )?;
            stop_timing(
                &self.backend,
                &mut self.profile,
                started,
                op.name(),
                Pass::Forward,
            )?;
            plan.computed[index] = true;
        }
        Ok(())
    }

    /// From now on, keeps only the values of `outputs` readable after a forward (and after a
    /// backward). Every other value goes back to the plan's pool once nothing needs it: after
    /// its last forward consumer, or, in a training forward, when backward has passed the node
    /// if some op's backward reads it ([`Op::backward_reads_input`]). So an evaluation forward
    /// holds only the values alive at one time, and a training step only what backward reads.
    /// Backward cannot follow an evaluation forward then, and runs once per training forward.
    pub fn keep_only(&mut self, outputs: &[NodeId]) -> Result<()> {
        let mut keep = vec![false; self.graph.nodes.len()];
        for &node in outputs {
            self.graph.check_node(node)?;
            keep[node.index] = true;
        }
        self.keep = Some(keep);
        Ok(())
    }

    /// Keeps every value readable after a forward, as before any [`Executor::keep_only`].
    pub fn keep_all(&mut self) {
        self.keep = None;
    }

    /// Back-propagates from the scalar node `loss` (seeded with 1), writing the gradient of every
    /// trainable tensor and gradient-taking input it depends on.
    pub fn backward(&mut self, loss: NodeId) -> Result<()> {
        let seed = self.unit_seed(loss)?;
        self.run_backward(loss, &seed, None)
    }

    /// As [`Executor::backward`], telling `hook` about each trainable tensor's gradient as soon
    /// as backward will not change it again, while the rest of backward is still to be enqueued
    /// (data-parallel training starts communicating these gradients early).
    pub fn backward_notifying(
        &mut self,
        loss: NodeId,
        hook: &mut dyn GradientReady<B>,
    ) -> Result<()> {
        let seed = self.unit_seed(loss)?;
        self.run_backward(loss, &seed, Some(hook))
    }

    /// The seed gradient 1 of the scalar node `loss`.
    fn unit_seed(&self, loss: NodeId) -> Result<HostTensor> {
        let shape = self.graph.shape(loss)?.clone();
        if shape.numel() != 1 {
            return Err(Error::shape(
                "backward",
                "the loss must be a scalar",
                &[&shape],
            ));
        }
        Ok(HostTensor::full(shape, 1.0))
    }

    /// Back-propagates from `node` with the given output gradient.
    pub fn backward_with(&mut self, node: NodeId, grad: &HostTensor) -> Result<()> {
        self.run_backward(node, grad, None)
    }

    fn run_backward(
        &mut self,
        node: NodeId,
        grad: &HostTensor,
        mut hook: Option<&mut dyn GradientReady<B>>,
    ) -> Result<()> {
        self.graph.check_node(node)?;
        let plan = self.current_plan_mut()?;
        if !plan.backward_ready {
            return Err(Error::Graph(
                "backward needs the values a training forward keeps for it (under keep_only, \
                 an evaluation forward keeps none and one backward releases them)"
                    .into(),
            ));
        }
        if !plan.computed[node.index] {
            return Err(self.not_computed(node.index));
        }
        let plan = self.plans.get_mut(self.current.as_ref().unwrap()).unwrap();
        if grad.shape() != &plan.shapes[node.index] {
            return Err(Error::shape(
                "backward",
                "the seed gradient must have the node's shape",
                &[grad.shape(), &plan.shapes[node.index]],
            ));
        }
        // Under keep_only, backward releases what it has read as it goes: once per forward.
        plan.backward_ready = self.keep.is_none();
        let nodes = &self.graph.nodes;
        let mut has_grad = vec![false; nodes.len()];
        self.grad_written.iter_mut().for_each(|w| *w = false);
        // The seed gradient goes where the node's gradient lives.
        let seed_target = match nodes[node.index].kind {
            NodeKind::Param(t) => grad_slot(
                &self.backend,
                &mut self.tensor_grads,
                t.0,
                &self.graph.tensors[t.0].shape,
            )?,
            _ => plan.grad_buffer(&self.backend, node.index)?,
        };
        self.backend.upload(grad.data(), seed_target)?;
        has_grad[node.index] = true;
        if let NodeKind::Param(t) = nodes[node.index].kind {
            self.grad_written[t.0] = true;
        }

        for index in (0..=node.index).rev() {
            // Backward has passed node `index + 1` and every later reader of its value.
            if let (Some(keep), true) = (&self.keep, index < node.index) {
                if !keep[index + 1] {
                    plan.release_value(&self.backend, index + 1);
                }
            }
            let (op, inputs) = match &nodes[index].kind {
                NodeKind::Op { op, inputs } if has_grad[index] => (op, inputs),
                _ => continue,
            };
            // Decide for each input whether its gradient is written directly or accumulated.
            let mut targets: Vec<Option<GradTarget>> = Vec::with_capacity(inputs.len());
            for (k, input) in inputs.iter().enumerate() {
                let m = input.index;
                let wanted = op.differentiable(k) && self.needs_grad[m] && plan.computed[m];
                if !wanted {
                    targets.push(None);
                } else if has_grad[m] || inputs[..k].contains(input) {
                    targets.push(Some(GradTarget::Accumulate(m)));
                } else {
                    has_grad[m] = true;
                    targets.push(Some(GradTarget::Direct(m)));
                }
            }
            // Make sure every target buffer exists, then take them out so they can be lent
            // mutably side by side.
            let mut taken: Vec<Option<B::Buffer>> = Vec::with_capacity(inputs.len());
            for (k, target) in targets.iter().enumerate() {
                taken.push(match *target {
                    None => None,
                    Some(GradTarget::Direct(m)) => Some(match nodes[m].kind {
                        NodeKind::Param(t) => {
                            grad_slot(
                                &self.backend,
                                &mut self.tensor_grads,
                                t.0,
                                &self.graph.tensors[t.0].shape,
                            )?;
                            self.tensor_grads[t.0].take().unwrap()
                        }
                        _ => {
                            plan.grad_buffer(&self.backend, m)?;
                            plan.grads[m].take().unwrap()
                        }
                    }),
                    Some(GradTarget::Accumulate(m)) => {
                        let scratch = Use::Scratch(index, k);
                        Some(plan.pool.lend(&self.backend, &plan.shapes[m], scratch)?)
                    }
                });
            }
            // Values this backward reads that the forward left to be recomputed.
            for v in backward_reads(op.as_ref(), index, inputs) {
                let NodeKind::Op { op: producer, .. } = &nodes[v].kind else {
                    continue;
                };
                if self.recomputed[v] && plan.values[v].is_none() {
                    let started = start_timing(&self.backend, &self.profile)?;
                    let run = NodeRun {
                        index: v,
                        mode: self.mode,
                        seed: node_seed(self.seed, self.step, v),
                        recompute: true,
                    };
                    run.run(&self.backend, &self.graph, plan, &mut self.tensors, None)?;
                    let name = producer.name();
                    stop_timing(
                        &self.backend,
                        &mut self.profile,
                        started,
                        name,
                        Pass::Recompute,
                    )?;
                }
            }
            let started = start_timing(&self.backend, &self.profile)?;
            let grad_output = plan.grads[index]
                .take()
                .expect("a node with a gradient has a buffer");
            let result = {
                let state: Vec<&B::Buffer> = op
                    .state()
                    .iter()
                    .map(|t| self.tensors[t.0].as_ref().unwrap())
                    .collect();
                // Values no backward reads may be gone: an empty buffer stands in.
                let input_bufs: Vec<&B::Buffer> = inputs
                    .iter()
                    .map(|i| {
                        node_value(&self.graph, &plan.values, &self.tensors, i.index)
                            .unwrap_or(&self.released)
                    })
                    .collect();
                let input_shapes: Vec<&Shape> =
                    inputs.iter().map(|i| &plan.shapes[i.index]).collect();
                let grad_inputs: Vec<Option<&mut B::Buffer>> =
                    taken.iter_mut().map(|b| b.as_mut()).collect();
                op.backward(BackwardCtx {
                    backend: &self.backend,
                    mode: self.mode,
                    seed: node_seed(self.seed, self.step, index),
                    inputs: &input_bufs,
                    input_shapes: &input_shapes,
                    output: plan.values[index].as_ref().unwrap_or(&self.released),
                    output_shape: &plan.shapes[index],
                    grad_output: &grad_output,
                    grad_inputs,
                    workspace: &mut plan.workspaces[index],
                    state: &state,
                    collective: hook.as_deref_mut().and_then(|h| h.collective()),
                })
            };
            plan.grads[index] = Some(grad_output);
            // Put every buffer back, adding accumulated gradients to their node's gradient.
            let mut accumulate_error = Ok(());
            for (k, (target, buf)) in targets.iter().zip(taken).enumerate() {
                let (Some(target), Some(buf)) = (target, buf) else {
                    continue;
                };
                match *target {
                    GradTarget::Direct(m) => match nodes[m].kind {
                        NodeKind::Param(t) => {
                            self.tensor_grads[t.0] = Some(buf);
                            self.grad_written[t.0] = true;
                        }
                        _ => plan.grads[m] = Some(buf),
                    },
                    GradTarget::Accumulate(m) => {
                        if result.is_ok() && accumulate_error.is_ok() {
                            let dst = match nodes[m].kind {
                                NodeKind::Param(t) => self.tensor_grads[t.0].as_mut().unwrap(),
                                _ => plan.grads[m].as_mut().unwrap(),
                            };
                            accumulate_error = self.backend.axpy(1.0, &buf, dst);
                        }
                        plan.pool
                            .take_back(&self.backend, buf, Use::Scratch(index, k));
                    }
                }
            }
            result?;
            accumulate_error?;
            // Nothing reads this node's gradient again, nor these values.
            if let Some(done) = plan.grads[index].take() {
                plan.pool.take_back(&self.backend, done, Use::Grad(index));
            }
            if let Some(keep) = &self.keep {
                for &v in self.last_read_by[index].iter().filter(|&&v| !keep[v]) {
                    plan.release_value(&self.backend, v);
                }
            }
            stop_timing(
                &self.backend,
                &mut self.profile,
                started,
                op.name(),
                Pass::Backward,
            )?;
            if let Some(hook) = hook.as_deref_mut() {
                for &t in &self.final_after[index] {
                    if self.grad_written[t.0] {
                        hook.ready(&self.backend, t, &mut self.tensor_grads)?;
                    }
                }
            }
        }
        if self.keep.as_ref().is_some_and(|keep| !keep[0]) {
            plan.release_value(&self.backend, 0);
        }
        Ok(())
    }

    /// The trainable tensors in the order backward finishes their gradients (see
    /// [`Executor::backward_notifying`]).
    pub fn gradient_order(&self) -> Vec<TensorId> {
        self.final_after.iter().rev().flatten().copied().collect()
    }

    /// The gradient buffers of the named tensors, by tensor index (`None` where backward never
    /// wrote one), with the backend.
    pub fn gradients_mut(&mut self) -> (&B, &mut [Option<B::Buffer>]) {
        (&self.backend, &mut self.tensor_grads)
    }

    /// Every named tensor's buffer (parameters and state), by tensor index, with the backend.
    pub fn tensor_buffers_mut(&mut self) -> (&B, Vec<&mut B::Buffer>) {
        let buffers = self
            .tensors
            .iter_mut()
            .map(|t| t.as_mut().expect("tensors are present"))
            .collect();
        (&self.backend, buffers)
    }

    /// The value of `node` from the last forward.
    pub fn value(&self, node: NodeId) -> Result<HostTensor> {
        self.graph.check_node(node)?;
        let plan = self.current_plan()?;
        if !plan.computed[node.index] {
            return Err(self.not_computed(node.index));
        }
        let Some(buf) = node_value(&self.graph, &plan.values, &self.tensors, node.index) else {
            return Err(Error::Graph(format!(
                "node {} is not among the outputs kept (see Executor::keep_only)",
                node.index
            )));
        };
        self.backend.to_host(buf, &plan.shapes[node.index])
    }

    /// The gradient of `node` from the last backward: of an input or a parameter (an op node's
    /// gradient is released once backward has passed it).
    pub fn grad(&self, node: NodeId) -> Result<HostTensor> {
        self.graph.check_node(node)?;
        if let NodeKind::Param(t) = self.graph.nodes[node.index].kind {
            return self.tensor_grad(t);
        }
        let plan = self.current_plan()?;
        match &plan.grads[node.index] {
            Some(buf) if plan.computed[node.index] => {
                self.backend.to_host(buf, &plan.shapes[node.index])
            }
            _ => Err(Error::Graph(format!(
                "node {} has no gradient (only inputs and parameters keep theirs)",
                node.index
            ))),
        }
    }

    /// The current value of a named tensor.
    pub fn tensor(&self, id: TensorId) -> Result<HostTensor> {
        let spec = self.spec(id)?;
        self.backend
            .to_host(self.tensors[id.0].as_ref().unwrap(), &spec.shape)
    }

    /// Overwrites a named tensor; the shape must match its declaration.
    pub fn set_tensor(&mut self, id: TensorId, value: &HostTensor) -> Result<()> {
        let spec = self.spec(id)?;
        if value.shape() != &spec.shape {
            return Err(Error::shape(
                "set_tensor",
                format!("'{}' has another shape", spec.name),
                &[value.shape(), &spec.shape],
            ));
        }
        self.backend
            .upload(value.data(), self.tensors[id.0].as_mut().unwrap())
    }

    /// The gradient of a trainable tensor from the last backward.
    pub fn tensor_grad(&self, id: TensorId) -> Result<HostTensor> {
        let spec = self.spec(id)?;
        match &self.tensor_grads[id.0] {
            Some(buf) if self.grad_written[id.0] => self.backend.to_host(buf, &spec.shape),
            _ => Err(Error::Graph(format!("'{}' has no gradient", spec.name))),
        }
    }

    /// A trainable tensor and its gradient, for an optimiser; `None` when the last backward did
    /// not reach it.
    pub fn param_and_grad(&mut self, id: TensorId) -> Result<Option<(&mut B::Buffer, &B::Buffer)>> {
        self.spec(id)?;
        if !self.grad_written[id.0] {
            return Ok(None);
        }
        let param = self.tensors[id.0].as_mut().unwrap();
        Ok(self.tensor_grads[id.0].as_ref().map(|g| (param, g)))
    }

    /// Bytes of device memory the plans hold for node values, gradients, op workspaces and free
    /// buffers (the named tensors and their gradients are not counted).
    pub fn plan_bytes(&self) -> u64 {
        let elements: usize = self
            .plans
            .values()
            .map(|plan| plan.elements(&self.backend))
            .sum();
        elements as u64 * std::mem::size_of::<f32>() as u64
    }

    /// Turns op timing on (or off): every op of later forwards and backwards then runs with the
    /// backend synchronised before and after it, which makes steps slower but counts the device
    /// work of each op in that op (see [`Executor::take_profile`]).
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(|| self.profile.take().unwrap_or_default());
    }

    /// The op times gathered since profiling was turned on or last taken (empty when it is off),
    /// starting afresh.
    pub fn take_profile(&mut self) -> Profile {
        self.profile
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Number of training forwards run so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Sets the training-forward count (it seeds dropout), so a run resumed from a checkpoint
    /// draws the same dropout masks as an uninterrupted one.
    pub fn set_step(&mut self, step: u64) {
        self.step = step;
    }

    fn spec(&self, id: TensorId) -> Result<&TensorSpec> {
        self.graph
            .tensors
            .get(id.0)
            .ok_or_else(|| Error::Graph(format!("tensor {} is not in this graph", id.0)))
    }

    fn plan_key(&self, fed: &[Option<&HostTensor>]) -> Vec<Shape> {
        self.graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, NodeKind::Input { .. }))
            .map(|(i, n)| fed[i].map_or_else(|| n.shape.clone(), |t| t.shape().clone()))
            .collect()
    }

    fn make_plan(&self, input_shapes: &[Shape]) -> Result<Plan<B>> {
        let mut shapes: Vec<Shape> = Vec::with_capacity(self.graph.nodes.len());
        let mut next_input = input_shapes.iter();
        for node in &self.graph.nodes {
            let shape = match &node.kind {
                NodeKind::Input { .. } => next_input.next().expect("one key per input").clone(),
                NodeKind::Param(t) => self.graph.tensors[t.0].shape.clone(),
                NodeKind::Op { op, inputs } => {
                    let in_shapes: Vec<&Shape> = inputs.iter().map(|i| &shapes[i.index]).collect();
                    op.output_shape(&in_shapes)?
                }
            };
            shapes.push(shape);
        }
        let mut workspaces = Vec::with_capacity(shapes.len());
        for (node, shape) in self.graph.nodes.iter().zip(&shapes) {
            let ws = match &node.kind {
                NodeKind::Op { op, inputs } => {
                    let in_shapes: Vec<&Shape> = inputs.iter().map(|i| &shapes[i.index]).collect();
                    op.workspace(&in_shapes, shape)
                        .into_iter()
                        .map(|s| self.backend.alloc(&TensorDesc::f32(s)))
                        .collect::<Result<Vec<_>>>()?
                }
                _ => Vec::new(),
            };
            workspaces.push(ws);
        }
        let n = shapes.len();
        static NEXT_PLAN: AtomicU64 = AtomicU64::new(0);
        Ok(Plan {
            id: NEXT_PLAN.fetch_add(1, Ordering::Relaxed),
            shapes,
            values: (0..n).map(|_| None).collect(),
            workspaces,
            grads: (0..n).map(|_| None).collect(),
            pool: BufferPool::new(),
            computed: vec![false; n],
            backward_ready: false,
        })
    }

    fn current_plan(&self) -> Result<&Plan<B>> {
        self.current
            .as_ref()
            .and_then(|k| self.plans.get(k))
            .ok_or_else(|| Error::Graph("no forward has run yet".into()))
    }

    fn current_plan_mut(&mut self) -> Result<&mut Plan<B>> {
        match self.current.as_ref() {
            Some(k) => Ok(self.plans.get_mut(k).unwrap()),
            None => Err(Error::Graph("no forward has run yet".into())),
        }
    }

    /// Explains why a node was not computed: the inputs it depends on that were not fed.
    fn not_computed(&self, index: usize) -> Error {
        let mut missing = Vec::new();
        let mut stack = vec![index];
        let mut seen = vec![false; self.graph.nodes.len()];
        let computed = self
            .current_plan()
            .map(|p| p.computed.clone())
            .unwrap_or_default();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            match &self.graph.nodes[i].kind {
                NodeKind::Input { name, .. } if !computed.get(i).copied().unwrap_or(false) => {
                    missing.push(name.clone())
                }
                NodeKind::Op { inputs, .. } => stack.extend(inputs.iter().map(|n| n.index)),
                _ => {}
            }
        }
        missing.sort();
        Error::Graph(format!(
            "node {index} was not computed: input(s) {} not fed",
            missing.join(", ")
        ))
    }
}

/// Told when the gradient of a trainable tensor is final during
/// [`Executor::backward_notifying`].
pub trait GradientReady<B: Backend> {
    /// The gradient of `tensor` is final; `grads` holds every tensor's gradient buffer by tensor
    /// index (`None` where none was ever computed).
    fn ready(
        &mut self,
        backend: &B,
        tensor: TensorId,
        grads: &mut [Option<B::Buffer>],
    ) -> Result<()>;

    /// The ranks ops synchronise with during this backward (synchronised batch norm), if any.
    fn collective(&mut self) -> Option<&mut (dyn Collective<B> + 'static)> {
        None
    }
}

#[derive(Clone, Copy)]
enum GradTarget {
    /// Written straight into the node's gradient buffer (its first contribution).
    Direct(usize),
    /// Written to a temporary and added (a later contribution of a fan-out).
    Accumulate(usize),
}

/// For a forward that keeps only the values `keep` marks: entry `i` lists the nodes whose values nothing needs
/// once the nodes before `i` have run (entry `len` those free at the end). Parameter nodes,
/// whose values are tensors, and nodes that do not run are never listed.
fn release_schedule<B: Backend>(
    graph: &Graph<B>,
    fed: &[Option<&HostTensor>],
    keep: &[bool],
) -> Vec<Vec<usize>> {
    let n = graph.nodes.len();
    let mut runs = vec![false; n];
    let mut last_use: Vec<usize> = (0..n).collect();
    for (index, node) in graph.nodes.iter().enumerate() {
        runs[index] = match &node.kind {
            NodeKind::Param(_) => true,
            NodeKind::Input { .. } => fed[index].is_some(),
            NodeKind::Op { inputs, .. } => inputs.iter().all(|i| runs[i.index]),
        };
        if let (true, NodeKind::Op { inputs, .. }) = (runs[index], &node.kind) {
            for input in inputs {
                last_use[input.index] = index;
            }
        }
    }
    let mut schedule = vec![Vec::new(); n + 1];
    for (index, node) in graph.nodes.iter().enumerate() {
        if runs[index] && !keep[index] && !matches!(node.kind, NodeKind::Param(_)) {
            schedule[last_use[index] + 1].push(index);
        }
    }
    schedule
}

/// The values an op's backward reads, as it declares ([`Op::backward_reads_input`],
/// [`Op::backward_reads_output`]): some of its inputs, and its own output (node `index`).
fn backward_reads<'a, B: Backend>(
    op: &'a dyn Op<B>,
    index: usize,
    inputs: &'a [NodeId],
) -> impl Iterator<Item = usize> + 'a {
    inputs
        .iter()
        .enumerate()
        .filter(|&(k, _)| op.backward_reads_input(k))
        .map(|(_, i)| i.index)
        .chain(op.backward_reads_output().then_some(index))
}

/// For each node, the last backward to read its value, if any may: of the ops whose backward
/// can run (those that depend on something taking a gradient), the earliest reader, since
/// backward runs from the last node to the first.
fn last_backward_reader<B: Backend>(graph: &Graph<B>, needs_grad: &[bool]) -> Vec<Option<usize>> {
    let mut last = vec![None; graph.nodes.len()];
    for (index, node) in graph.nodes.iter().enumerate() {
        if let (NodeKind::Op { op, inputs }, true) = (&node.kind, needs_grad[index]) {
            for v in backward_reads(op.as_ref(), index, inputs) {
                last[v].get_or_insert(index);
            }
        }
    }
    last
}

/// One run of a node's op into a buffer from the plan's pool, kept as the node's value: its
/// forward, or with `recompute` its [`Op::recompute`].
struct NodeRun {
    index: usize,
    mode: Mode,
    seed: u64,
    recompute: bool,
}

impl NodeRun {
    fn run<B: Backend>(
        &self,
        backend: &B,
        graph: &Graph<B>,
        plan: &mut Plan<B>,
        tensors: &mut [Option<B::Buffer>],
        collective: Option<&mut (dyn Collective<B> + 'static)>,
    ) -> Result<()> {
        let index = self.index;
        let NodeKind::Op { op, inputs } = &graph.nodes[index].kind else {
            return Err(Error::Graph(format!("node {index} is not an op")));
        };
        let mut output = plan
            .pool
            .lend(backend, &plan.shapes[index], Use::Value(index))?;
        let state_ids = op.state();
        let mut state: Vec<B::Buffer> = state_ids
            .iter()
            .map(|t| tensors[t.0].take().expect("state tensors are present"))
            .collect();
        let result = {
            let input_bufs: Vec<&B::Buffer> = inputs
                .iter()
                .map(|i| {
                    node_value(graph, &plan.values, tensors, i.index)
                        .expect("values live until their last reader")
                })
                .collect();
            let input_shapes: Vec<&Shape> = inputs.iter().map(|i| &plan.shapes[i.index]).collect();
            let cx = ForwardCtx {
                backend,
                mode: self.mode,
                seed: self.seed,
                inputs: &input_bufs,
                input_shapes: &input_shapes,
                output: &mut output,
                output_shape: &plan.shapes[index],
                workspace: &mut plan.workspaces[index],
                state: &mut state,
                collective,
            };
            match self.recompute {
                true => op.recompute(cx),
                false => op.forward(cx),
            }
        };
        plan.values[index] = Some(output);
        for (t, buf) in state_ids.iter().zip(state) {
            tensors[t.0] = Some(buf);
        }
        result
    }
}

/// Which nodes depend on a trainable tensor or a gradient-taking input.
fn needs_grad<B: Backend>(graph: &Graph<B>) -> Vec<bool> {
    let mut needs = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        needs[i] = match &node.kind {
            NodeKind::Input { requires_grad, .. } => *requires_grad,
            NodeKind::Param(t) => graph.tensors[t.0].trainable,
            NodeKind::Op { op, inputs } => inputs
                .iter()
                .enumerate()
                .any(|(k, n)| op.differentiable(k) && needs[n.index]),
        };
    }
    needs
}

/// For each node, the trainable tensors it is the earliest consumer of: once backward has
/// passed that node, nothing adds to their gradients any more.
fn final_after<B: Backend>(graph: &Graph<B>) -> Vec<Vec<TensorId>> {
    let mut first_use: Vec<Option<usize>> = vec![None; graph.tensors.len()];
    for (index, node) in graph.nodes.iter().enumerate() {
        if let NodeKind::Op { inputs, .. } = &node.kind {
            for input in inputs {
                if let NodeKind::Param(t) = graph.nodes[input.index].kind {
                    first_use[t.0].get_or_insert(index);
                }
            }
        }
    }
    let mut after = vec![Vec::new(); graph.nodes.len()];
    for (t, first) in first_use.into_iter().enumerate() {
        if let Some(node) = first.filter(|_| graph.tensors[t].trainable) {
            after[node].push(TensorId(t));
        }
    }
    after
}

/// The value of node `index`: its tensor for a parameter node, else its buffer while it lives.
fn node_value<'a, B: Backend>(
    graph: &Graph<B>,
    values: &'a [Option<B::Buffer>],
    tensors: &'a [Option<B::Buffer>],
    index: usize,
) -> Option<&'a B::Buffer> {
    match graph.nodes[index].kind {
        NodeKind::Param(t) => Some(tensors[t.0].as_ref().expect("tensors are present")),
        _ => values[index].as_ref(),
    }
}

/// The gradient buffer in `slots[index]`, allocated on first use.
fn grad_slot<'a, B: Backend>(
    backend: &B,
    slots: &'a mut [Option<B::Buffer>],
    index: usize,
    shape: &Shape,
) -> Result<&'a mut B::Buffer> {
    if slots[index].is_none() {
        slots[index] = Some(backend.alloc(&TensorDesc::f32(shape.clone()))?);
    }
    Ok(slots[index].as_mut().unwrap())
}

/// When profiling, waits for the work enqueued so far and returns the time the op starts.
fn start_timing<B: Backend>(backend: &B, profile: &Option<Profile>) -> Result<Option<Instant>> {
    if profile.is_none() {
        return Ok(None);
    }
    backend.sync()?;
    Ok(Some(Instant::now()))
}

/// When profiling, waits for the op's work and records its time.
fn stop_timing<B: Backend>(
    backend: &B,
    profile: &mut Option<Profile>,
    started: Option<Instant>,
    op: &'static str,
    pass: Pass,
) -> Result<()> {
    if let (Some(start), Some(profile)) = (started, profile.as_mut()) {
        backend.sync()?;
        profile.record(op, pass, start.elapsed());
    }
    Ok(())
}

fn tensor_seed(seed: u64, index: usize) -> u64 {
    seed ^ (hash32(index as u32) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn node_seed(seed: u64, step: u64, node: usize) -> u64 {
    let mixed = hash32(step as u32 ^ hash32(node as u32 ^ hash32((step >> 32) as u32)));
    seed.rotate_left(17) ^ ((mixed as u64) << 32 | hash32(mixed) as u64)
}
