//! What a poll returns: `MessageBundle` → `Message` (one table) → `Event` (one transaction's
//! changes to it) → `Record` (one row change) → `Image` (a row's values).
//!
//! The Python objects are views into one shared bundle (an `Arc`): nothing is converted to
//! Python until asked for, so a consumer that reads only keys pays only for keys.

use std::sync::{Arc, OnceLock};

use changestream::consumer::MessageBundle;
use changestream::consumer::TxnInfo;
use changestream::consumer::{BeforeImage, Image, Op, Record};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::relation::RelationNames;
use crate::runtime::{wait, with_timeout};
use crate::values::{datetime_from_unix_micros, image_dict, record_dicts, unchanged_columns};

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A polled bundle and its grouping into messages and events (computed on first use).
pub(crate) struct BundleData {
    bundle: MessageBundle,
    groups: OnceLock<Groups>,
    /// The Python strings of each relation of the bundle (made on first use).
    names: PyOnceLock<Vec<RelationNames>>,
}

struct Groups {
    events: Vec<EventData>,
    messages: Vec<MessageData>,
}

/// One transaction's records of one table: indexes into the bundle.
struct EventData {
    records: Vec<usize>,
}

/// One table's events: indexes into `Groups::events`.
struct MessageData {
    events: Vec<usize>,
}

impl BundleData {
    pub(crate) fn new(bundle: MessageBundle) -> BundleData {
        BundleData {
            bundle,
            groups: OnceLock::new(),
            names: PyOnceLock::new(),
        }
    }

    /// `image` of `record` as a dict (see [`image_dict`]), keyed by the relation's cached
    /// column names.
    fn image_dict<'py>(
        &self,
        py: Python<'py>,
        record: &Record,
        image: &Image<'_>,
    ) -> PyResult<Bound<'py, PyDict>> {
        match self.names_of(py, record) {
            Some(names) => image_dict(py, image, names),
            // Not reached: images belong to records of a relation, all in `names`.
            None => match record.relation() {
                Some(relation) => image_dict(py, image, &RelationNames::new(py, relation)),
                None => Ok(PyDict::new(py)),
            },
        }
    }

    /// The names of the record's relation (`None` for logical messages).
    fn names_of(&self, py: Python<'_>, record: &Record) -> Option<&RelationNames> {
        let relation = record.relation()?;
        let all = self.names.get_or_init(py, || {
            let mut all: Vec<RelationNames> = Vec::new();
            for relation in self.bundle.records().filter_map(Record::relation) {
                if !all.iter().any(|names| names.is_of(relation)) {
                    all.push(RelationNames::new(py, relation));
                }
            }
            all
        });
        all.iter().find(|names| names.is_of(relation))
    }

    /// The record as one `dict` (see `Record.to_dict`).
    fn record_dict<'py>(&self, py: Python<'py>, record: &Record) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "op"), op_str(py, record.op()))?;
        let table = self.names_of(py, record).map(|names| names.table(py));
        dict.set_item(intern!(py, "table"), table)?;
        dict.set_item(intern!(py, "event_id"), record.event_id().to_string())?;
        dict.set_item(
            intern!(py, "commit_lsn"),
            record.txn().commit_lsn.to_string(),
        )?;
        let [key, current, before] = match self.names_of(py, record) {
            Some(names) => record_dicts(py, record, names)?,
            None => Default::default(),
        };
        dict.set_item(intern!(py, "key"), key)?;
        dict.set_item(intern!(py, "current"), current)?;
        dict.set_item(intern!(py, "before"), before)?;
        let state = before_state_str(py, before_image_state(record));
        dict.set_item(intern!(py, "before_state"), state)?;
        Ok(dict)
    }

    fn record(&self, index: usize) -> &Record {
        // `records()` is a slice iterator: `nth` is a constant-time index. Indexes come
        // from this bundle's own grouping, so they are in range.
        self.bundle
            .records()
            .nth(index)
            .expect("record index of this bundle")
    }

    /// The same grouping as the library's `MessageBundle::events` / `messages`, by index.
    fn groups(&self) -> &Groups {
        self.groups.get_or_init(|| {
            let mut events: Vec<EventData> = Vec::new();
            let mut txn_start = 0;
            for (index, record) in self.bundle.records().enumerate() {
                let same_txn = events
                    .get(txn_start)
                    .is_some_and(|e| Arc::ptr_eq(self.record(e.records[0]).txn(), record.txn()));
                if !same_txn {
                    txn_start = events.len();
                }
                let table = table_of(record);
                let found = events[txn_start..]
                    .iter_mut()
                    .find(|e| table_of(self.record(e.records[0])) == table);
                match found {
                    Some(event) => event.records.push(index),
                    None => events.push(EventData {
                        records: vec![index],
                    }),
                }
            }
            let mut messages: Vec<MessageData> = Vec::new();
            for (index, event) in events.iter().enumerate() {
                let table = table_of(self.record(event.records[0]));
                let found = messages
                    .iter_mut()
                    .find(|m| table_of(self.record(events[m.events[0]].records[0])) == table);
                match found {
                    Some(message) => message.events.push(index),
                    None => messages.push(MessageData {
                        events: vec![index],
                    }),
                }
            }
            Groups { events, messages }
        })
    }
}

/// The op's name as a Python `str`, made once per op.
fn op_str<'py>(py: Python<'py>, op: Op) -> Bound<'py, PyString> {
    match op {
        Op::Insert => intern!(py, "insert").clone(),
        Op::Update => intern!(py, "update").clone(),
        Op::Delete => intern!(py, "delete").clone(),
        other => PyString::new(py, other.as_str()),
    }
}

fn before_image_state(record: &Record) -> BeforeImageState {
    match record.before() {
        BeforeImage::Full(_) => BeforeImageState::Full,
        BeforeImage::Key(_) => BeforeImageState::Key,
        BeforeImage::NotEnabled => BeforeImageState::NotEnabled,
        _ => BeforeImageState::NotApplicable,
    }
}

/// [`BeforeImageState::value`] as a Python `str`, made once per state.
fn before_state_str(py: Python<'_>, state: BeforeImageState) -> &Bound<'_, PyString> {
    match state {
        BeforeImageState::Full => intern!(py, "full"),
        BeforeImageState::Key => intern!(py, "key"),
        BeforeImageState::NotEnabled => intern!(py, "not_enabled"),
        BeforeImageState::NotApplicable => intern!(py, "not_applicable"),
    }
}

fn table_of(record: &Record) -> Option<(&str, &str)> {
    record.relation().map(|r| (r.schema(), r.name()))
}

/// `'schema.name'` or `None`, as Python's `repr` prints an optional string.
fn table_repr(table: Option<String>) -> String {
    table.map_or_else(|| "None".to_owned(), |t| format!("'{t}'"))
}

fn qualified(record: &Record) -> Option<String> {
    table_of(record).map(|(schema, name)| format!("{schema}.{name}"))
}

fn commit_time<'py>(py: Python<'py>, txn: &TxnInfo) -> PyResult<Py<PyAny>> {
    // Python has always seen 2000-01-01 for a non-transactional message.
    let micros = txn
        .commit_time_micros
        .unwrap_or(0)
        .saturating_add(PG_EPOCH_UNIX_MICROS);
    Ok(datetime_from_unix_micros(py, micros, true)?.map_or_else(|| py.None(), Bound::unbind))
}

/// The records of one poll, in commit order. Empty when the poll found nothing.
///
/// `commit()` commits every record in it and everything before (in manual mode; automatic
/// mode commits at the next poll).
#[pyclass(module = "pg_changestream", name = "MessageBundle", frozen)]
pub(crate) struct PyMessageBundle {
    data: Arc<BundleData>,
}

impl PyMessageBundle {
    pub(crate) fn new(data: Arc<BundleData>) -> PyMessageBundle {
        PyMessageBundle { data }
    }
}

#[pymethods]
impl PyMessageBundle {
    /// Whether the poll found nothing.
    fn is_empty(&self) -> bool {
        self.data.bundle.is_empty()
    }

    fn __len__(&self) -> usize {
        self.data.bundle.len()
    }

    fn __bool__(&self) -> bool {
        !self.data.bundle.is_empty()
    }

    /// The messages — one table's events each — in order of each table's first event.
    /// Logical messages (op `"message"`) form a message of their own, without a table.
    fn get_messages(&self) -> Vec<PyMessage> {
        (0..self.data.groups().messages.len())
            .map(|index| PyMessage {
                data: Arc::clone(&self.data),
                index,
            })
            .collect()
    }

    /// Every record, in commit order (within a transaction, in the order of its changes).
    fn get_records(&self) -> Vec<PyRecord> {
        (0..self.data.bundle.len())
            .map(|index| PyRecord {
                data: Arc::clone(&self.data),
                index,
            })
            .collect()
    }

    /// Bytes of WAL between the end of this bundle and the server's WAL end (the lag).
    fn get_wal_bytes_behind(&self) -> u64 {
        self.data.bundle.wal_bytes_behind()
    }

    /// Commits this bundle and everything before it: none of it is delivered to the group
    /// again. With `timeout_ms`, raises `TimeoutError` if the commit takes longer.
    #[pyo3(signature = (timeout_ms = None))]
    fn commit(&self, py: Python<'_>, timeout_ms: Option<u64>) -> PyResult<()> {
        let data = Arc::clone(&self.data);
        wait(py, async move {
            with_timeout(timeout_ms, data.bundle.commit()).await
        })?
    }

    fn __repr__(&self) -> String {
        format!("<MessageBundle records={}>", self.data.bundle.len())
    }
}

/// One table's events in a bundle.
#[pyclass(module = "pg_changestream", name = "Message", frozen)]
pub(crate) struct PyMessage {
    data: Arc<BundleData>,
    index: usize,
}

impl PyMessage {
    fn first(&self) -> &Record {
        let groups = self.data.groups();
        let event = &groups.events[groups.messages[self.index].events[0]];
        self.data.record(event.records[0])
    }
}

#[pymethods]
impl PyMessage {
    /// The table as `schema.name` (`None` for logical messages).
    fn get_table_name(&self) -> Option<String> {
        qualified(self.first())
    }

    /// The table's schema (`None` for logical messages).
    fn get_schema_name(&self) -> Option<String> {
        table_of(self.first()).map(|(schema, _)| schema.to_owned())
    }

    /// The events: one transaction's changes to this table each, in commit order.
    fn get_events(&self) -> Vec<PyEvent> {
        self.data.groups().messages[self.index]
            .events
            .iter()
            .map(|&index| PyEvent {
                data: Arc::clone(&self.data),
                index,
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "<Message table={} events={}>",
            table_repr(self.get_table_name()),
            self.data.groups().messages[self.index].events.len()
        )
    }
}

/// One transaction's changes to one table.
#[pyclass(module = "pg_changestream", name = "Event", frozen)]
pub(crate) struct PyEvent {
    data: Arc<BundleData>,
    index: usize,
}

impl PyEvent {
    fn first(&self) -> &Record {
        self.data
            .record(self.data.groups().events[self.index].records[0])
    }
}

#[pymethods]
impl PyEvent {
    /// The records, in the order of the transaction's changes.
    fn get_records(&self) -> Vec<PyRecord> {
        self.data.groups().events[self.index]
            .records
            .iter()
            .map(|&index| PyRecord {
                data: Arc::clone(&self.data),
                index,
            })
            .collect()
    }

    /// The table as `schema.name` (`None` for logical messages).
    fn get_table_name(&self) -> Option<String> {
        qualified(self.first())
    }

    /// The LSN of the transaction's commit record, as text (`0/16B3748`).
    fn get_commit_lsn(&self) -> String {
        self.first().txn().commit_lsn.to_string()
    }

    /// The commit time, a timezone-aware `datetime` in UTC.
    fn get_commit_time(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        commit_time(py, self.first().txn())
    }

    /// The transaction id (xid).
    fn get_transaction_id(&self) -> u32 {
        self.first().txn().xid.unwrap_or(0)
    }

    fn __repr__(&self) -> String {
        format!(
            "<Event table={} commit_lsn={} records={}>",
            table_repr(self.get_table_name()),
            self.get_commit_lsn(),
            self.data.groups().events[self.index].records.len()
        )
    }
}

/// What the before-image of a record holds.
#[pyclass(
    module = "pg_changestream",
    name = "BeforeImageState",
    eq,
    eq_int,
    frozen,
    from_py_object
)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BeforeImageState {
    /// The whole old row (the table has before-images: `REPLICA IDENTITY FULL`).
    #[pyo3(name = "FULL")]
    Full,
    /// Only the old key: a delete, or an update that changed the key, of a table without
    /// before-images.
    #[pyo3(name = "KEY")]
    Key,
    /// An update of a table without before-images that kept its key: the old row was not
    /// logged. Enable before-images to get it.
    #[pyo3(name = "NOT_ENABLED")]
    NotEnabled,
    /// Inserts, backfill reads, truncates and logical messages have no before-image.
    #[pyo3(name = "NOT_APPLICABLE")]
    NotApplicable,
}

#[pymethods]
impl BeforeImageState {
    /// `"full"`, `"key"`, `"not_enabled"` or `"not_applicable"`.
    #[getter]
    fn value(&self) -> &'static str {
        match self {
            BeforeImageState::Full => "full",
            BeforeImageState::Key => "key",
            BeforeImageState::NotEnabled => "not_enabled",
            BeforeImageState::NotApplicable => "not_applicable",
        }
    }
}

/// One row change (or truncate, or logical message).
#[pyclass(module = "pg_changestream", name = "Record", frozen)]
pub(crate) struct PyRecord {
    data: Arc<BundleData>,
    index: usize,
}

impl PyRecord {
    fn record(&self) -> &Record {
        self.data.record(self.index)
    }

    fn image(&self, which: Which) -> Option<PyImage> {
        let record = self.record();
        let present = match which {
            Which::Current => record.current().is_some(),
            Which::Before => record.before().image().is_some(),
        };
        present.then(|| PyImage {
            data: Arc::clone(&self.data),
            index: self.index,
            which,
        })
    }
}

#[pymethods]
impl PyRecord {
    /// The operation: `"insert"`, `"update"`, `"delete"`, `"truncate"`, `"read"` (a row of
    /// a backfill), `"message"`; kinds added by later versions come as their own name.
    fn get_op(&self) -> &'static str {
        self.record().op().as_str()
    }

    /// The table as `schema.name` (`None` for logical messages).
    fn get_table_name(&self) -> Option<String> {
        qualified(self.record())
    }

    /// The row's key (its replica identity columns) as a `dict`, from the new row or, for
    /// a delete, the old one; `None` for truncates and messages.
    fn get_record_key<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let record = self.record();
        record
            .key()
            .map(|key| self.data.image_dict(py, record, &key))
            .transpose()
    }

    /// The row after the change (`None` for a delete, truncate or message).
    fn get_current_image(&self) -> Option<PyImage> {
        self.image(Which::Current)
    }

    /// The row before the change: the whole row with before-images, the old key for a
    /// delete (or key change) without; `None` when there is none — see
    /// `get_before_image_state()` for why.
    fn get_before_image(&self) -> Option<PyImage> {
        self.image(Which::Before)
    }

    /// What the before-image holds: `BeforeImageState.FULL`, `KEY`, `NOT_ENABLED` or
    /// `NOT_APPLICABLE`.
    fn get_before_image_state(&self) -> BeforeImageState {
        before_image_state(self.record())
    }

    /// The event id, the same on every delivery of this change: `<commit_lsn>:<index>`, in
    /// a partitioned group `<commit_lsn>:<partition>:<index>`. Use it to deduplicate.
    fn get_event_id(&self) -> String {
        self.record().event_id().to_string()
    }

    /// The LSN of the transaction's commit record, as text (`0/16B3748`).
    fn get_commit_lsn(&self) -> String {
        self.record().txn().commit_lsn.to_string()
    }

    /// The commit time, a timezone-aware `datetime` in UTC.
    fn get_commit_time(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        commit_time(py, self.record().txn())
    }

    /// The transaction id (xid).
    fn get_transaction_id(&self) -> u32 {
        self.record().txn().xid.unwrap_or(0)
    }

    /// The group partition the record came through (`None` in a group of one partition).
    fn get_partition(&self) -> Option<u16> {
        self.record().partition().map(u16::from)
    }

    /// For a logical message: its prefix.
    fn get_message_prefix(&self) -> Option<String> {
        self.record().message_content().map(|(p, _)| p.to_owned())
    }

    /// For a logical message: its content.
    fn get_message_content<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.record()
            .message_content()
            .map(|(_, content)| PyBytes::new(py, content))
    }

    /// For a truncate: `(cascade, restart_identity)`.
    fn get_truncate_options(&self) -> Option<(bool, bool)> {
        self.record().truncate_options()
    }

    /// The record as one `dict`: `op`, `table`, `event_id`, `commit_lsn`, `key`, `current`,
    /// `before` (dicts or `None`) and `before_state`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.data.record_dict(py, self.record())
    }

    fn __repr__(&self) -> String {
        format!(
            "<Record {} {} event_id={}>",
            self.get_op(),
            table_repr(self.get_table_name()),
            self.get_event_id()
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Current,
    Before,
}

/// A row image: the row's values after (current) or before the change.
#[pyclass(module = "pg_changestream", name = "Image", frozen)]
pub(crate) struct PyImage {
    data: Arc<BundleData>,
    index: usize,
    which: Which,
}

impl PyImage {
    fn with_image<T>(&self, f: impl FnOnce(&Record, &Image<'_>) -> T) -> T {
        let record = self.data.record(self.index);
        let image = match self.which {
            Which::Current => record.current(),
            Which::Before => record.before().image(),
        };
        // `PyImage` is only made for images that exist (`PyRecord::image`).
        f(record, &image.expect("the image this view was made for"))
    }
}

#[pymethods]
impl PyImage {
    /// The row as a `dict` of column name → native Python value (see the package docs
    /// for the types). Columns whose TOASTed value the server did not send are left out;
    /// `get_unchanged_columns()` lists them.
    fn get_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.with_image(|record, image| self.data.image_dict(py, record, image))
    }

    /// The columns whose large (TOASTed) value an update did not change and the server did
    /// not send, with no before-image to fill them in. Not null: unknown.
    fn get_unchanged_columns(&self) -> Vec<String> {
        self.with_image(|_, image| unchanged_columns(image))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<Image {}>", self.get_value(py)?.repr()?))
    }
}
