//! The relation cache: what each relation id in the stream means right now.
//!
//! pgoutput sends a Relation (`R`) message before a relation's first change on every
//! connection and again after every change to its schema, so the cache lives per
//! connection and is rebuilt after a reconnect — a relation id's columns are never assumed
//! to survive one. Each Relation message that changes the shape (columns added, dropped,
//! renamed, retyped; identity changed) makes a new [`Relation`] with a higher
//! [`Relation::version`]; records hold an `Arc` of the one they were decoded with, so a
//! record keeps its own schema even after the cache moves on.
//!
//! Type (`Y`) messages name non-built-in types; they do not say whether a type is an enum
//! or a domain, so such columns decode as text unless the type catalog knows better.

use std::collections::HashMap;
use std::sync::Arc;

use crate::decode::json;
use crate::decode::types::{TypeCatalog, ValueKind};
use crate::error::{Error, Result};
use crate::protocol::pgoutput::{self, ReplicaIdentity};

/// A relation as described by its latest Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    id: u32,
    schema: String,
    name: String,
    replica_identity: ReplicaIdentity,
    columns: Vec<Column>,
    version: u64,
    /// Whether the server guarantees its column text is UTF-8 (see [`Relation::text_is_utf8`]).
    text_utf8: bool,
}

/// One published column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    type_oid: u32,
    type_modifier: i32,
    is_key: bool,
    kind: ValueKind,
    /// `"name":` as the JSON writer puts it before the value, escaped once here.
    json_key: Box<[u8]>,
}

impl Relation {
    /// The relation's OID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Its schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its replica identity setting when the message was sent.
    pub fn replica_identity(&self) -> ReplicaIdentity {
        self.replica_identity
    }

    /// The published columns, in tuple order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Increases each time this relation id's description changes on this connection
    /// (starting at 1).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Indexes of the key columns (replica identity key: the primary key, the identity
    /// index, or every column under FULL).
    pub fn key_columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_key)
            .map(|(i, _)| i)
    }

    /// Whether the server guarantees that the text of this relation's values is valid
    /// UTF-8: a UTF8 database (every text value was validated on its way in) or rows read
    /// by SQL (the client library checked them). Writers may then skip validating it again;
    /// under other server encodings (`SQL_ASCII` passes any byte through) they must not.
    pub fn text_is_utf8(&self) -> bool {
        self.text_utf8
    }

    /// A relation described from the catalog rather than by a Relation message (backfill
    /// reads rows with SQL before, or without, any change of the table in the stream).
    /// `columns` are (name, type OID, type modifier, is key), in attribute order.
    pub(crate) fn from_catalog(
        id: u32,
        schema: String,
        name: String,
        replica_identity: ReplicaIdentity,
        columns: Vec<(String, u32, i32, bool)>,
        types: &TypeCatalog,
    ) -> Relation {
        Relation {
            id,
            schema,
            name,
            replica_identity,
            columns: columns
                .into_iter()
                .map(|(name, type_oid, type_modifier, is_key)| Column {
                    json_key: json::object_key(&name),
                    name,
                    type_oid,
                    type_modifier,
                    is_key,
                    kind: types.kind(type_oid),
                })
                .collect(),
            version: 1,
            // Backfill rows come through tokio-postgres as `String`s: UTF-8 checked.
            text_utf8: true,
        }
    }

    fn same_shape(&self, other: &Relation) -> bool {
        self.schema == other.schema
            && self.name == other.name
            && self.replica_identity == other.replica_identity
            && self.columns == other.columns
            && self.text_utf8 == other.text_utf8
    }
}

impl Column {
    /// Column name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Type OID.
    pub fn type_oid(&self) -> u32 {
        self.type_oid
    }

    /// Type modifier (`atttypmod`), -1 when none.
    pub fn type_modifier(&self) -> i32 {
        self.type_modifier
    }

    /// Whether the column belongs to the replica identity key.
    pub fn is_key(&self) -> bool {
        self.is_key
    }

    /// How its values decode.
    pub fn kind(&self) -> ValueKind {
        self.kind
    }

    /// `"name":`, escaped for JSON.
    pub(crate) fn json_key(&self) -> &[u8] {
        &self.json_key
    }
}

/// Primary keys read from the catalog, by table.
///
/// Under `REPLICA IDENTITY FULL` the Relation message flags *every* column as part of the
/// key (the identity is the whole row), but a consumer means the primary key when it asks
/// for a record's key. Relations of tables listed here report their primary key columns
/// instead; tables not listed (or without a primary key) keep what the server flagged.
#[derive(Debug, Clone, Default)]
pub struct PrimaryKeys(HashMap<(String, String), Vec<String>>);

impl PrimaryKeys {
    /// None known.
    pub fn new() -> PrimaryKeys {
        PrimaryKeys::default()
    }

    /// Records the primary key columns of `schema.table`.
    pub fn insert(&mut self, schema: &str, table: &str, columns: Vec<String>) {
        self.0
            .insert((schema.to_owned(), table.to_owned()), columns);
    }

    /// The primary key columns of `schema.table`, if known.
    pub fn get(&self, schema: &str, table: &str) -> Option<&[String]> {
        self.0
            .get(&(schema.to_owned(), table.to_owned()))
            .map(Vec::as_slice)
    }
}

/// Relations and types seen on one connection.
#[derive(Debug, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Arc<Relation>>,
    types: TypeCatalog,
    primary_keys: PrimaryKeys,
    text_utf8: bool,
}

impl RelationCache {
    /// An empty cache with the built-in types, plus whatever `types` knows about the
    /// database's own types (domains, enums, their arrays).
    pub fn new(types: TypeCatalog) -> RelationCache {
        RelationCache {
            relations: HashMap::new(),
            types,
            primary_keys: PrimaryKeys::new(),
            text_utf8: false,
        }
    }

    /// Marks the relations of this connection as carrying text the server guarantees to be
    /// UTF-8 (`server_encoding` is `UTF8`); see [`Relation::text_is_utf8`].
    pub fn with_utf8_text(mut self, utf8: bool) -> RelationCache {
        self.text_utf8 = utf8;
        self
    }

    /// Reports these primary keys as the key of `REPLICA IDENTITY FULL` relations.
    pub fn with_primary_keys(mut self, keys: PrimaryKeys) -> RelationCache {
        self.primary_keys = keys;
        self
    }

    /// Takes a Relation message; returns the relation now in force.
    pub fn apply_relation(&mut self, message: &pgoutput::Relation) -> Arc<Relation> {
        let previous = self.relations.get(&message.id);
        let mut relation = Relation {
            id: message.id,
            schema: message.namespace.clone(),
            name: message.name.clone(),
            replica_identity: message.replica_identity,
            columns: message
                .columns
                .iter()
                .map(|c| Column {
                    json_key: json::object_key(&c.name),
                    name: c.name.clone(),
                    type_oid: c.type_oid,
                    type_modifier: c.type_modifier,
                    is_key: c.is_key(),
                    kind: self.types.kind(c.type_oid),
                })
                .collect(),
            version: 1,
            text_utf8: self.text_utf8,
        };
        if relation.replica_identity == ReplicaIdentity::Full {
            if let Some(key) = self.primary_keys.get(&relation.schema, &relation.name) {
                let all_published = key
                    .iter()
                    .all(|k| relation.columns.iter().any(|c| &c.name == k));
                if all_published {
                    for column in &mut relation.columns {
                        column.is_key = key.contains(&column.name);
                    }
                }
            }
        }
        if let Some(previous) = previous {
            if previous.same_shape(&relation) {
                return Arc::clone(previous);
            }
            relation.version = previous.version + 1;
        }
        let relation = Arc::new(relation);
        self.relations.insert(message.id, Arc::clone(&relation));
        relation
    }

    /// Takes a Type message. The message names the type but not what it is, so this only
    /// matters for types the catalog was told about; kept for completeness of the cache.
    pub fn apply_type(&mut self, _message: &pgoutput::TypeMessage) {}

    /// The type catalog, to register domains and enums found by other means.
    pub fn types_mut(&mut self) -> &mut TypeCatalog {
        &mut self.types
    }

    /// The relation with this id.
    ///
    /// # Errors
    /// A change arrived for a relation id whose Relation message never came on this
    /// connection: a protocol violation.
    pub fn get(&self, id: u32) -> Result<&Arc<Relation>> {
        self.relations.get(&id).ok_or_else(|| {
            Error::protocol(format!(
                "a change refers to relation id {id} before any Relation message described it"
            ))
        })
    }

    /// Forgets everything learnt from the stream (after a reconnect).
    pub fn clear(&mut self) {
        self.relations.clear();
    }
}
