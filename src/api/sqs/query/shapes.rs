//! The query protocol's names for every SQS action's input and output (docs/interface.md §3.6):
//! for each member, its JSON protocol name, its query-protocol name and its shape. One table
//! serves both directions: `decode.rs` reads form parameters into the JSON protocol's request
//! object with it, and `xml.rs` writes the JSON protocol's answer as XML with it, so each action
//! has one implementation (the JSON one) behind both protocols.
//!
//! The names are AWS's own (the 2012-11-05 query API): every list and map is flattened, so a list
//! `AttributeNames` travels as `AttributeName.1`, `AttributeName.2`… and comes back as repeated
//! `<AttributeName>` elements, and a map `Attributes` as `Attribute.1.Name` / `Attribute.1.Value`
//! and `<Attribute><Name>…</Name><Value>…</Value></Attribute>`.

/// The shape of a member.
#[derive(Debug)]
pub(crate) enum Shape {
    /// Text.
    Str,
    /// An integer: text on the wire, a JSON number for the action.
    Int,
    /// `true` / `false`.
    Bool,
    /// A flattened list: `Name.N` (N from 1) on the wire, one `<Name>` element per item in XML.
    List(&'static Shape),
    /// A flattened map: `Name.N.<key>` and `Name.N.<value>` on the wire, one
    /// `<Name><key>…</key><value>…</value></Name>` per entry in XML.
    Map {
        /// The entry's key member name.
        key: &'static str,
        /// The entry's value member name.
        value: &'static str,
        /// The value's shape.
        of: &'static Shape,
    },
    /// An object whose members are `Name.Member` on the wire and `<Name><Member>` in XML.
    Struct(&'static [Member]),
}

/// One member of a structure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    /// Its name in the JSON protocol.
    pub(crate) json: &'static str,
    /// Its name in the query protocol (a flattened list's or map's entry name).
    pub(crate) wire: &'static str,
    /// Its shape.
    pub(crate) shape: &'static Shape,
}

/// An action: its input members, and its output members if it has a `<NameResult>` element.
#[derive(Debug)]
pub(crate) struct Op {
    /// The action name.
    pub(crate) name: &'static str,
    /// What the request carries.
    pub(crate) input: &'static [Member],
    /// What the answer carries; `None` for actions answering only `ResponseMetadata`.
    pub(crate) output: Option<&'static [Member]>,
}

const fn m(json: &'static str, wire: &'static str, shape: &'static Shape) -> Member {
    Member { json, wire, shape }
}

/// A member whose JSON and query names are the same.
const fn same(name: &'static str, shape: &'static Shape) -> Member {
    m(name, name, shape)
}

const S: &Shape = &Shape::Str;
const I: &Shape = &Shape::Int;
const B: &Shape = &Shape::Bool;
const STRINGS: &Shape = &Shape::List(S);
const NAMED_VALUES: &Shape = &Shape::Map {
    key: "Name",
    value: "Value",
    of: S,
};
const TAGS: &Shape = &Shape::Map {
    key: "Key",
    value: "Value",
    of: S,
};
const QUEUE_URL: Member = same("QueueUrl", S);

const ATTRIBUTE_VALUE: &Shape = &Shape::Struct(&[
    same("StringValue", S),
    same("BinaryValue", S),
    m("StringListValues", "StringListValue", STRINGS),
    m("BinaryListValues", "BinaryListValue", STRINGS),
    same("DataType", S),
]);
const MESSAGE_ATTRIBUTES: &Shape = &Shape::Map {
    key: "Name",
    value: "Value",
    of: ATTRIBUTE_VALUE,
};

/// What SendMessage and each SendMessageBatch entry carry besides the entry id.
const SEND_MEMBERS: [Member; 6] = [
    same("MessageBody", S),
    same("DelaySeconds", I),
    m("MessageAttributes", "MessageAttribute", MESSAGE_ATTRIBUTES),
    m(
        "MessageSystemAttributes",
        "MessageSystemAttribute",
        MESSAGE_ATTRIBUTES,
    ),
    same("MessageDeduplicationId", S),
    same("MessageGroupId", S),
];

/// What a successful send reports (each SendMessageBatch entry also its `Id`).
const SENT_MEMBERS: [Member; 5] = [
    same("MessageId", S),
    same("MD5OfMessageBody", S),
    same("MD5OfMessageAttributes", S),
    same("MD5OfMessageSystemAttributes", S),
    same("SequenceNumber", S),
];

const BATCH_ERROR: &Shape = &Shape::Struct(&[
    same("Id", S),
    same("SenderFault", B),
    same("Code", S),
    same("Message", S),
]);
const FAILED: Member = m("Failed", "BatchResultErrorEntry", &Shape::List(BATCH_ERROR));
const JUST_ID: &Shape = &Shape::Struct(&[same("Id", S)]);

const MESSAGE: &Shape = &Shape::Struct(&[
    same("MessageId", S),
    same("ReceiptHandle", S),
    same("MD5OfBody", S),
    same("Body", S),
    m("Attributes", "Attribute", NAMED_VALUES),
    same("MD5OfMessageAttributes", S),
    m("MessageAttributes", "MessageAttribute", MESSAGE_ATTRIBUTES),
]);

const MOVE_TASK: &Shape = &Shape::Struct(&[
    same("TaskHandle", S),
    same("Status", S),
    same("SourceArn", S),
    same("DestinationArn", S),
    same("MaxNumberOfMessagesPerSecond", I),
    same("ApproximateNumberOfMessagesMoved", I),
    same("ApproximateNumberOfMessagesToMove", I),
    same("FailureReason", S),
    same("StartedTimestamp", I),
]);

/// Every action of the SQS API, in the query protocol's terms.
pub(crate) const OPS: &[Op] = &[
    Op {
        name: "AddPermission",
        input: &[
            QUEUE_URL,
            same("Label", S),
            m("AWSAccountIds", "AWSAccountId", STRINGS),
            m("Actions", "ActionName", STRINGS),
        ],
        output: None,
    },
    Op {
        name: "CancelMessageMoveTask",
        input: &[same("TaskHandle", S)],
        output: Some(&[same("ApproximateNumberOfMessagesMoved", I)]),
    },
    Op {
        name: "ChangeMessageVisibility",
        input: &[
            QUEUE_URL,
            same("ReceiptHandle", S),
            same("VisibilityTimeout", I),
        ],
        output: None,
    },
    Op {
        name: "ChangeMessageVisibilityBatch",
        input: &[
            QUEUE_URL,
            m(
                "Entries",
                "ChangeMessageVisibilityBatchRequestEntry",
                &Shape::List(&Shape::Struct(&[
                    same("Id", S),
                    same("ReceiptHandle", S),
                    same("VisibilityTimeout", I),
                ])),
            ),
        ],
        output: Some(&[
            m(
                "Successful",
                "ChangeMessageVisibilityBatchResultEntry",
                &Shape::List(JUST_ID),
            ),
            FAILED,
        ]),
    },
    Op {
        name: "CreateQueue",
        input: &[
            same("QueueName", S),
            m("Attributes", "Attribute", NAMED_VALUES),
            m("tags", "Tag", TAGS),
        ],
        output: Some(&[QUEUE_URL]),
    },
    Op {
        name: "DeleteMessage",
        input: &[QUEUE_URL, same("ReceiptHandle", S)],
        output: None,
    },
    Op {
        name: "DeleteMessageBatch",
        input: &[
            QUEUE_URL,
            m(
                "Entries",
                "DeleteMessageBatchRequestEntry",
                &Shape::List(&Shape::Struct(&[same("Id", S), same("ReceiptHandle", S)])),
            ),
        ],
        output: Some(&[
            m(
                "Successful",
                "DeleteMessageBatchResultEntry",
                &Shape::List(JUST_ID),
            ),
            FAILED,
        ]),
    },
    Op {
        name: "DeleteQueue",
        input: &[QUEUE_URL],
        output: None,
    },
    Op {
        name: "GetQueueAttributes",
        input: &[QUEUE_URL, m("AttributeNames", "AttributeName", STRINGS)],
        output: Some(&[m("Attributes", "Attribute", NAMED_VALUES)]),
    },
    Op {
        name: "GetQueueUrl",
        input: &[same("QueueName", S), same("QueueOwnerAWSAccountId", S)],
        output: Some(&[QUEUE_URL]),
    },
    Op {
        name: "ListDeadLetterSourceQueues",
        input: &[QUEUE_URL, same("NextToken", S), same("MaxResults", I)],
        output: Some(&[m("queueUrls", "QueueUrl", STRINGS), same("NextToken", S)]),
    },
    Op {
        name: "ListMessageMoveTasks",
        input: &[same("SourceArn", S), same("MaxResults", I)],
        output: Some(&[m(
            "Results",
            "ListMessageMoveTasksResultEntry",
            &Shape::List(MOVE_TASK),
        )]),
    },
    Op {
        name: "ListQueueTags",
        input: &[QUEUE_URL],
        output: Some(&[m("Tags", "Tag", TAGS)]),
    },
    Op {
        name: "ListQueues",
        input: &[
            same("QueueNamePrefix", S),
            same("NextToken", S),
            same("MaxResults", I),
        ],
        output: Some(&[m("QueueUrls", "QueueUrl", STRINGS), same("NextToken", S)]),
    },
    Op {
        name: "PurgeQueue",
        input: &[QUEUE_URL],
        output: None,
    },
    Op {
        name: "ReceiveMessage",
        input: &[
            QUEUE_URL,
            m("AttributeNames", "AttributeName", STRINGS),
            m(
                "MessageSystemAttributeNames",
                "MessageSystemAttributeName",
                STRINGS,
            ),
            m("MessageAttributeNames", "MessageAttributeName", STRINGS),
            same("MaxNumberOfMessages", I),
            same("VisibilityTimeout", I),
            same("WaitTimeSeconds", I),
            same("ReceiveRequestAttemptId", S),
        ],
        output: Some(&[m("Messages", "Message", &Shape::List(MESSAGE))]),
    },
    Op {
        name: "RemovePermission",
        input: &[QUEUE_URL, same("Label", S)],
        output: None,
    },
    Op {
        name: "SendMessage",
        input: &[
            QUEUE_URL,
            SEND_MEMBERS[0],
            SEND_MEMBERS[1],
            SEND_MEMBERS[2],
            SEND_MEMBERS[3],
            SEND_MEMBERS[4],
            SEND_MEMBERS[5],
        ],
        output: Some(&SENT_MEMBERS),
    },
    Op {
        name: "SendMessageBatch",
        input: &[
            QUEUE_URL,
            m(
                "Entries",
                "SendMessageBatchRequestEntry",
                &Shape::List(&Shape::Struct(&[
                    same("Id", S),
                    SEND_MEMBERS[0],
                    SEND_MEMBERS[1],
                    SEND_MEMBERS[2],
                    SEND_MEMBERS[3],
                    SEND_MEMBERS[4],
                    SEND_MEMBERS[5],
                ])),
            ),
        ],
        output: Some(&[
            m(
                "Successful",
                "SendMessageBatchResultEntry",
                &Shape::List(&Shape::Struct(&[
                    same("Id", S),
                    SENT_MEMBERS[0],
                    SENT_MEMBERS[1],
                    SENT_MEMBERS[2],
                    SENT_MEMBERS[3],
                    SENT_MEMBERS[4],
                ])),
            ),
            FAILED,
        ]),
    },
    Op {
        name: "SetQueueAttributes",
        input: &[QUEUE_URL, m("Attributes", "Attribute", NAMED_VALUES)],
        output: None,
    },
    Op {
        name: "StartMessageMoveTask",
        input: &[
            same("SourceArn", S),
            same("DestinationArn", S),
            same("MaxNumberOfMessagesPerSecond", I),
        ],
        output: Some(&[same("TaskHandle", S)]),
    },
    Op {
        name: "TagQueue",
        input: &[QUEUE_URL, m("Tags", "Tag", TAGS)],
        output: None,
    },
    Op {
        name: "UntagQueue",
        input: &[QUEUE_URL, m("TagKeys", "TagKey", STRINGS)],
        output: None,
    },
];

/// The action called `name`.
pub(crate) fn op(name: &str) -> Option<&'static Op> {
    OPS.iter().find(|o| o.name == name)
}
