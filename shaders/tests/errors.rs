//! What a failure of shader generation becomes for the device ([`Error::for_node`]): only an
//! op or dtype the back end lacks is `Unsupported` (a coverage gap); a template error, invalid
//! WGSL or a group the back end cannot lower is `Internal` (a bug, which the conformance runner
//! counts as an error), and each names the node, its op and its inputs' shapes.

use sfumato_core::plan::{Group, GroupKind, Plan};
use sfumato_core::{DType, Error as CoreError, Graph, NodeId};
use sfumato_shaders::{generate, Error, LowerOptions};

/// `y = relu(a @ b)` with a: [2, 3], b: [3, 4]; the MatMul node.
fn graph() -> (Graph, NodeId) {
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [2, 3]);
    let b = g.input("b", DType::F32, [3, 4]);
    let m = g.matmul(a, b).unwrap();
    let y = g.relu(m).unwrap();
    g.set_outputs(&[y]).unwrap();
    let node = g.value(m).producer.unwrap();
    (g, node)
}

fn names_the_node(e: &CoreError) {
    let msg = e.to_string();
    assert!(
        msg.contains("MatMul") && msg.contains("[2, 3]") && msg.contains("[3, 4]"),
        "{msg}"
    );
}

#[test]
fn generator_failures_are_internal_errors_and_gaps_stay_unsupported() {
    let (g, id) = graph();
    let node = g.node(id);
    for e in [
        Error::Template("template matmul: no value for placeholder 'x'".into()),
        Error::Naga {
            kernel: "matmul_rb4".into(),
            msg: "bad".into(),
        },
        Error::Internal("a group output not computed by it".into()),
    ] {
        let c = e.for_node(&g, node);
        assert!(matches!(c, CoreError::Internal { .. }), "{c:?}");
        names_the_node(&c);
    }
    let c = Error::Unsupported("Exp on i32".into()).for_node(&g, node);
    assert!(matches!(c, CoreError::Unsupported { .. }), "{c:?}");
    names_the_node(&c);
    for e in [Error::Limit("x".into()), Error::LoopBudget("y".into())] {
        let c = e.for_node(&g, node);
        assert!(matches!(c, CoreError::Limit { .. }), "{c:?}");
    }
}

/// A group the plan could never make (a Conv group whose anchor is a MatMul): the generator's
/// own error is internal, not "unsupported".
#[test]
fn a_group_the_back_end_cannot_lower_is_internal() {
    let (g, id) = graph();
    let node = g.node(id);
    let group = Group {
        kind: GroupKind::Conv,
        nodes: vec![id],
        outputs: node.outputs.clone(),
        inplace: None,
    };
    let plan = Plan {
        groups: vec![group.clone()],
        ..Default::default()
    };
    let e = match generate(&g, &plan, &group, &LowerOptions::default()) {
        Err(e) => e,
        Ok(_) => panic!("a Conv group without a conv was lowered"),
    };
    assert!(matches!(e, Error::Internal(_)), "{e:?}");
    let c = e.for_node(&g, node);
    assert!(matches!(c, CoreError::Internal { .. }), "{c:?}");
    names_the_node(&c);
}
