//! A relation's Python strings, made once per bundle instead of once per row.
//!
//! Every row dict has the same keys — the table's column names — and `to_dict` the same
//! table name. A fresh `str` per key costs an allocation, a UTF-8 decode and a hash when it
//! goes into the dict; a cached one has its hash already. The cache lives in the bundle,
//! which holds the relations alive, so a relation is found by address without a stale
//! address ever matching.

use std::sync::Arc;

use changestream::consumer::{oid, Relation};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::json::KeyCache;

/// `uuid[]`.
const UUID_ARRAY: u32 = 2951;

/// Whether values of the type become `uuid.UUID`s (`uuid`, `uuid[]`).
pub(crate) fn is_uuid_type(type_oid: u32) -> bool {
    type_oid == oid::UUID || type_oid == UUID_ARRAY
}

/// The Python strings of one relation.
pub(crate) struct RelationNames {
    relation: Arc<Relation>,
    /// `schema.name`.
    table: Py<PyString>,
    /// In the relation's column order.
    columns: Vec<ColumnName>,
    /// The keys of its `json`/`jsonb` documents.
    json_keys: KeyCache,
}

/// A column's name as a dict key, and whether its values become `uuid.UUID`s.
pub(crate) struct ColumnName {
    pub(crate) key: Py<PyString>,
    pub(crate) uuid: bool,
}

impl RelationNames {
    pub(crate) fn new(py: Python<'_>, relation: &Arc<Relation>) -> RelationNames {
        let qualified = format!("{}.{}", relation.schema(), relation.name());
        RelationNames {
            relation: Arc::clone(relation),
            table: PyString::new(py, &qualified).unbind(),
            columns: relation
                .columns()
                .iter()
                .map(|c| ColumnName {
                    key: PyString::new(py, c.name()).unbind(),
                    uuid: is_uuid_type(c.type_oid()),
                })
                .collect(),
            json_keys: KeyCache::default(),
        }
    }

    /// The keys of the relation's `json`/`jsonb` documents made so far.
    pub(crate) fn json_keys(&self) -> &KeyCache {
        &self.json_keys
    }

    /// Whether these are the names of `relation` (the same object, not an equal one).
    pub(crate) fn is_of(&self, relation: &Relation) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.relation), relation)
    }

    /// `schema.name`.
    pub(crate) fn table<'py>(&self, py: Python<'py>) -> &Bound<'py, PyString> {
        self.table.bind(py)
    }

    /// The column called `name` at or after `*from` (images list their columns in the
    /// relation's order, key images a subset), moving `*from` past it.
    pub(crate) fn column(&self, name: &str, from: &mut usize) -> Option<&ColumnName> {
        let metas = self.relation.columns();
        while let Some(meta) = metas.get(*from) {
            *from += 1;
            if meta.name() == name {
                return self.columns.get(*from - 1);
            }
        }
        None
    }
}
