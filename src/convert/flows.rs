//! Task flows: `CreateFlow`/`UpdateFlow` requests to `/flow/*` bodies, and back.

use crate::{
    proto::v1::{self as pb, Channel, FlowTrigger},
    upstream as wire,
};

use super::{
    InvalidRequest, Violations, channel_from_wire,
    limits::{MAX_FLOW_NODES, NAME_CHARS},
};

/// Checks a `CreateFlow` request and builds the `/flow/add` body.
pub fn create_request(req: &pb::CreateFlowRequest) -> Result<wire::FlowRequest, InvalidRequest> {
    let mut v = Violations::default();
    let body = flow_body(&mut v, None, &req.name, &req.nodes);
    v.finish(body)
}

/// Checks an `UpdateFlow` request and builds the `/flow/update/{flowId}` body.
pub fn update_request(req: &pb::UpdateFlowRequest) -> Result<wire::FlowRequest, InvalidRequest> {
    let mut v = Violations::default();
    v.numeric_id("flow_id", &req.flow_id);
    let body = flow_body(&mut v, Some(req.flow_id.clone()), &req.name, &req.nodes);
    v.finish(body)
}

/// Checks a `GetFlow` request.
pub fn get_request(req: &pb::GetFlowRequest) -> Result<(), InvalidRequest> {
    let mut v = Violations::default();
    v.numeric_id("flow_id", &req.flow_id);
    v.finish(())
}

fn flow_body(
    v: &mut Violations,
    flow_id: Option<String>,
    name: &str,
    nodes: &[pb::FlowNode],
) -> wire::FlowRequest {
    v.text("name", name, NAME_CHARS);
    let flow = if nodes.is_empty() {
        v.add("nodes", "at least one node is required");
        Vec::new()
    } else if nodes.len() > MAX_FLOW_NODES {
        // One violation for the list, not one per node of a runaway list.
        v.add("nodes", format!("must have at most {MAX_FLOW_NODES} nodes"));
        Vec::new()
    } else {
        nodes
            .iter()
            .enumerate()
            .map(|(index, node)| node_to_wire(v, index, node))
            .collect()
    };
    wire::FlowRequest {
        flow_id,
        name: name.to_owned(),
        flow,
    }
}

fn node_to_wire(v: &mut Violations, index: usize, node: &pb::FlowNode) -> wire::FlowNode {
    let field = |name: &str| format!("nodes[{index}].{name}");
    if node.waiting_time_seconds == 0 {
        v.add(field("waiting_time_seconds"), "is required");
    } else {
        v.range(
            &field("waiting_time_seconds"),
            Some(node.waiting_time_seconds),
            30..=120,
        );
    }
    let status = match FlowTrigger::try_from(node.trigger) {
        Ok(FlowTrigger::Unspecified) | Err(_) => {
            v.add(field("trigger"), "must be SEND_FAILED or NOT_VERIFIED");
            0
        }
        Ok(trigger) => trigger as i32,
    };
    let channel = match Channel::try_from(node.channel) {
        Ok(Channel::Sms) => "sms",
        Ok(Channel::Call) => "call",
        _ => {
            v.add(field("channel"), "must be CHANNEL_SMS or CHANNEL_CALL");
            ""
        }
    };
    wire::FlowNode {
        waiting_time: node.waiting_time_seconds,
        status,
        channel: channel.to_owned(),
        channel_cut: Some(i32::from(node.channel_cut)),
    }
}

/// The upstream flow as proto.
pub fn from_wire(flow: wire::Flow) -> pb::Flow {
    pb::Flow {
        flow_id: flow.flow_id,
        name: flow.name,
        nodes: flow.flow.into_iter().map(node_from_wire).collect(),
    }
}

fn node_from_wire(node: wire::FlowNode) -> pb::FlowNode {
    pb::FlowNode {
        waiting_time_seconds: node.waiting_time,
        trigger: FlowTrigger::try_from(node.status).unwrap_or(FlowTrigger::Unspecified) as i32,
        channel: channel_from_wire(Some(&node.channel)) as i32,
        channel_cut: node.channel_cut == Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::tests::fields;

    #[test]
    fn only_channel_cut_1_keeps_the_channel() {
        for (wire_value, expected) in [(Some(1), true), (Some(0), false), (None, false)] {
            let node = wire::FlowNode {
                channel_cut: wire_value,
                ..Default::default()
            };
            assert_eq!(node_from_wire(node).channel_cut, expected, "{wire_value:?}");
        }
    }

    #[test]
    fn nodes_are_checked_one_by_one() {
        let err = create_request(&pb::CreateFlowRequest {
            name: "fallback".into(),
            nodes: vec![
                pb::FlowNode {
                    waiting_time_seconds: 30,
                    trigger: FlowTrigger::SendFailed as i32,
                    channel: Channel::Call as i32,
                    channel_cut: false,
                },
                pb::FlowNode {
                    waiting_time_seconds: 121,
                    trigger: 0,
                    channel: Channel::Sna as i32,
                    channel_cut: true,
                },
            ],
        })
        .expect_err("invalid");
        assert_eq!(
            fields(err),
            [
                "nodes[1].waiting_time_seconds",
                "nodes[1].trigger",
                "nodes[1].channel"
            ]
        );
    }

    #[test]
    fn empty_flow_is_rejected() {
        let err = create_request(&pb::CreateFlowRequest {
            name: "fallback".into(),
            nodes: vec![],
        })
        .expect_err("invalid");
        assert_eq!(fields(err), ["nodes"]);
    }

    #[test]
    fn a_flow_has_at_most_ten_nodes_and_a_runaway_list_is_one_violation() {
        let node = pb::FlowNode {
            waiting_time_seconds: 30,
            trigger: FlowTrigger::SendFailed as i32,
            channel: Channel::Sms as i32,
            channel_cut: false,
        };
        let flow = |count: usize| pb::CreateFlowRequest {
            name: "fallback".into(),
            nodes: vec![node; count],
        };
        let body = create_request(&flow(MAX_FLOW_NODES)).expect("at the limit");
        assert_eq!(body.flow.len(), MAX_FLOW_NODES);
        let err = create_request(&flow(MAX_FLOW_NODES + 1)).expect_err("over the limit");
        assert_eq!(fields(err), ["nodes"]);
        let bad = pb::FlowNode {
            waiting_time_seconds: 1,
            ..node
        };
        let err = create_request(&pb::CreateFlowRequest {
            name: "fallback".into(),
            nodes: vec![bad; 200_000],
        })
        .expect_err("runaway");
        assert_eq!(fields(err), ["nodes"]);
    }

    #[test]
    fn flow_ids_and_names_are_clean() {
        let err = update_request(&pb::UpdateFlowRequest {
            flow_id: " 7\n".into(),
            name: "fall\u{2066}back".into(),
            nodes: vec![],
        })
        .expect_err("invalid");
        assert_eq!(fields(err), ["flow_id", "name", "nodes"]);
        let err = get_request(&pb::GetFlowRequest {
            flow_id: "1".repeat(60_000),
        })
        .expect_err("too long");
        assert_eq!(fields(err), ["flow_id"]);
    }
}
