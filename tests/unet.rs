//! The U-Net has the PyTorch layout's parameters: the same state_dict keys, the same shapes (in
//! magnet's layout) and the same count (31.0 M for the paper's 64-channel network).

mod common;

use std::collections::BTreeMap;

use magnet::models::{UNet, UNetConfig, Upsampling};
use magnet::{CpuBackend, Graph, TensorLayout};

/// State_dict keys with their PyTorch shapes.
type Keys = Vec<(String, Vec<usize>)>;

/// Keys and PyTorch shapes per model from `tests/fixtures/unet_state_dict.txt`, written by
/// `scripts/torch_unet.py keys`.
fn pytorch_models() -> BTreeMap<String, (usize, Keys)> {
    let path = common::project_root().join("tests/fixtures/unet_state_dict.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut models = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap();
        if first == "model" {
            current = words.next().unwrap().to_string();
            let count = words.next().unwrap().parse().unwrap();
            models.insert(current.clone(), (count, Vec::new()));
        } else {
            let dims = words.map(|w| w.parse().unwrap()).collect();
            models
                .get_mut(&current)
                .unwrap()
                .1
                .push((first.to_string(), dims));
        }
    }
    models
}

/// PyTorch's shape of a tensor from magnet's, by its layout.
fn to_pytorch(layout: TensorLayout, dims: &[usize]) -> Vec<usize> {
    match (layout, dims) {
        (TensorLayout::ConvWeight, &[o, kh, kw, i]) => vec![o, i, kh, kw],
        (TensorLayout::ConvTransposeWeight, &[i, kh, kw, o]) => vec![i, o, kh, kw],
        (_, other) => other.to_vec(),
    }
}

#[test]
fn unet_matches_the_pytorch_state_dict() {
    for (label, (count, keys)) in pytorch_models() {
        let upsampling = if label == "bilinear" {
            Upsampling::Bilinear
        } else {
            Upsampling::Transposed
        };
        let mut g = Graph::<CpuBackend>::new();
        let cfg = UNetConfig {
            in_channels: 3,
            classes: 2,
            base_channels: 64,
            upsampling,
        };
        UNet::build(&mut g, cfg, 1, 64, 64).unwrap();
        let ours: Vec<(String, Vec<usize>)> = g
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), to_pytorch(t.layout, t.shape.dims())))
            .collect();
        assert_eq!(
            ours, keys,
            "{label}: names or shapes differ from PyTorch's state_dict"
        );
        assert_eq!(g.num_trainable(), count, "{label}: parameter count");
    }
}

#[test]
fn unet_rejects_sizes_that_do_not_pool_four_times() {
    let mut g = Graph::<CpuBackend>::new();
    let cfg = UNetConfig {
        in_channels: 1,
        classes: 2,
        base_channels: 4,
        upsampling: Upsampling::Bilinear,
    };
    let err = UNet::build(&mut g, cfg, 1, 40, 64).unwrap_err();
    assert!(err.to_string().contains("40"), "{err}");
}
