//! Query-protocol answers as AWS writes them: the JSON protocol's answer object rendered as
//! `<NameResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><NameResult>…</NameResult>
//! <ResponseMetadata><RequestId>…</RequestId></ResponseMetadata></NameResponse>` by the action's
//! table in `shapes.rs` (no `<NameResult>` for actions without output, an empty
//! `<NameResult/>` when there is nothing to report), and errors as `<ErrorResponse><Error>
//! <Type>Sender</Type><Code>…</Code><Message>…</Message><Detail/></Error><RequestId>…
//! </RequestId></ErrorResponse>`. Written with quick-xml; text is escaped, and a carriage return
//! is written as `&#xD;` so that XML parsers, which turn a literal one into a line feed, give it
//! back unchanged.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde_json::{Map, Value};

use super::shapes::{Member, Op, Shape};
use crate::api::error::SqsError;

/// The namespace of every SQS query-protocol answer.
pub(crate) const NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// An answer that does not fit the action's table: a bug (the table and the action disagree).
#[derive(Debug)]
pub(crate) struct Drift(String);

impl From<Drift> for SqsError {
    fn from(d: Drift) -> Self {
        SqsError::internal(&format!(
            "a query-protocol answer does not fit its table: {}",
            d.0
        ))
    }
}

type Out = Writer<Vec<u8>>;

/// The XML of `op`'s successful answer `out`.
pub(crate) fn success(op: &Op, out: &Value, request_id: &str) -> Result<Vec<u8>, Drift> {
    let mut w = Writer::new(Vec::with_capacity(512));
    declaration(&mut w);
    let response = format!("{}Response", op.name);
    start(
        &mut w,
        BytesStart::new(response.as_str()).with_attributes([("xmlns", NAMESPACE)]),
    );
    if let Some(members) = op.output {
        let result = format!("{}Result", op.name);
        let fields = out
            .as_object()
            .ok_or_else(|| Drift(format!("{} answered {out}", op.name)))?;
        if fields.is_empty() {
            event(&mut w, Event::Empty(BytesStart::new(result.as_str())));
        } else {
            start(&mut w, BytesStart::new(result.as_str()));
            write_members(&mut w, members, fields)?;
            end(&mut w, &result);
        }
    }
    start(&mut w, BytesStart::new("ResponseMetadata"));
    text_element(&mut w, "RequestId", request_id);
    end(&mut w, "ResponseMetadata");
    end(&mut w, &response);
    Ok(w.into_inner())
}

/// The XML of an error answer. A missing queue is worded as AWS words it in this protocol.
pub(crate) fn error(e: &SqsError, request_id: &str) -> Vec<u8> {
    let message = match e.message() {
        "The specified queue does not exist." => {
            "The specified queue does not exist for this wsdl version."
        }
        m => m,
    };
    let mut w = Writer::new(Vec::with_capacity(512));
    declaration(&mut w);
    start(
        &mut w,
        BytesStart::new("ErrorResponse").with_attributes([("xmlns", NAMESPACE)]),
    );
    start(&mut w, BytesStart::new("Error"));
    text_element(&mut w, "Type", e.fault());
    text_element(&mut w, "Code", e.query_code());
    text_element(&mut w, "Message", message);
    event(&mut w, Event::Empty(BytesStart::new("Detail")));
    end(&mut w, "Error");
    text_element(&mut w, "RequestId", request_id);
    end(&mut w, "ErrorResponse");
    w.into_inner()
}

fn write_members(
    w: &mut Out,
    members: &[Member],
    fields: &Map<String, Value>,
) -> Result<(), Drift> {
    if let Some(unknown) = fields
        .keys()
        .find(|k| !members.iter().any(|m| m.json == *k))
    {
        return Err(Drift(format!("no query name for member {unknown}")));
    }
    for member in members {
        if let Some(v) = fields.get(member.json) {
            write_value(w, member.wire, member.shape, v)?;
        }
    }
    Ok(())
}

fn write_value(w: &mut Out, name: &str, shape: &Shape, v: &Value) -> Result<(), Drift> {
    match shape {
        Shape::Str | Shape::Int | Shape::Bool => {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => return Err(Drift(format!("{name} is {other}, not a scalar"))),
            };
            text_element(w, name, &text);
        }
        Shape::List(of) => {
            let items = v
                .as_array()
                .ok_or_else(|| Drift(format!("{name} is not a list")))?;
            for item in items {
                write_value(w, name, of, item)?;
            }
        }
        Shape::Map { key, value, of } => {
            let entries = v
                .as_object()
                .ok_or_else(|| Drift(format!("{name} is not a map")))?;
            for (k, item) in entries {
                start(w, BytesStart::new(name));
                text_element(w, key, k);
                write_value(w, value, of, item)?;
                end(w, name);
            }
        }
        Shape::Struct(members) => {
            let fields = v
                .as_object()
                .ok_or_else(|| Drift(format!("{name} is not an object")))?;
            start(w, BytesStart::new(name));
            write_members(w, members, fields)?;
            end(w, name);
        }
    }
    Ok(())
}

/// Escapes text for an element: `&`, `<`, `>`, and a carriage return as `&#xD;`.
fn escape(text: &str) -> String {
    let escaped = quick_xml::escape::partial_escape(text);
    if escaped.contains('\r') {
        escaped.replace('\r', "&#xD;")
    } else {
        escaped.into_owned()
    }
}

fn text_element(w: &mut Out, name: &str, text: &str) {
    start(w, BytesStart::new(name));
    event(w, Event::Text(BytesText::from_escaped(escape(text))));
    end(w, name);
}

fn declaration(w: &mut Out) {
    event(w, Event::Decl(BytesDecl::new("1.0", None, None)));
}

fn start(w: &mut Out, tag: BytesStart<'_>) {
    event(w, Event::Start(tag));
}

fn end(w: &mut Out, name: &str) {
    event(w, Event::End(BytesEnd::new(name)));
}

/// Writes one event; writing into a `Vec` cannot fail.
fn event(w: &mut Out, e: Event<'_>) {
    if let Err(e) = w.write_event(e) {
        tracing::error!(error = %e, "writing XML into memory failed");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::sqs::query::shapes::op;

    fn xml(action: &str, out: Value) -> String {
        String::from_utf8(success(op(action).unwrap(), &out, "rid").unwrap()).unwrap()
    }

    #[test]
    fn answers_are_written_with_the_query_names() {
        let got = xml(
            "ReceiveMessage",
            json!({"Messages": [{"MessageId": "m", "ReceiptHandle": "h", "MD5OfBody": "d",
                "Body": "a<b>&\r\n", "Attributes": {"SenderId": "s"},
                "MessageAttributes": {"k": {"DataType": "Binary", "BinaryValue": "AAE="}}}]}),
        );
        assert_eq!(
            got,
            format!(
                "<?xml version=\"1.0\"?><ReceiveMessageResponse xmlns=\"{NAMESPACE}\"><ReceiveMessageResult>\
                 <Message><MessageId>m</MessageId><ReceiptHandle>h</ReceiptHandle><MD5OfBody>d</MD5OfBody>\
                 <Body>a&lt;b&gt;&amp;&#xD;\n</Body><Attribute><Name>SenderId</Name><Value>s</Value></Attribute>\
                 <MessageAttribute><Name>k</Name><Value><BinaryValue>AAE=</BinaryValue><DataType>Binary</DataType></Value></MessageAttribute>\
                 </Message></ReceiveMessageResult><ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></ReceiveMessageResponse>"
            )
        );
        assert!(
            xml("ReceiveMessage", json!({})).contains("<ReceiveMessageResult/><ResponseMetadata>")
        );
        let got = xml("DeleteQueue", json!({}));
        assert!(
            got.contains("<DeleteQueueResponse xmlns=") && !got.contains("Result"),
            "{got}"
        );
    }

    #[test]
    fn a_member_the_table_lacks_is_a_drift_not_a_silent_drop() {
        let e = success(
            op("GetQueueUrl").unwrap(),
            &json!({"QueueUrl": "u", "Extra": 1}),
            "r",
        );
        assert!(e.unwrap_err().0.contains("Extra"));
    }
}
