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
//! Type (`Y`) messages describe non-built-in types; for a domain they name its base type,
//! so a domain over a built-in type decodes as that type. Other user types (enums,
//! composites, arrays of domains) decode by what the type catalog was told (the consumer
//! reads `pg_type` at each stream start), else as text.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
    /// A partitioned table under `REPLICA IDENTITY FULL` (from the catalog, see
    /// [`PrimaryKeys::mark_partitioned`]): a partition of it may lack before-images.
    partitioned: bool,
}

/// One published column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    type_oid: u32,
    type_modifier: i32,
    is_key: bool,
    kind: ValueKind,
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

    /// Whether the catalog listed this relation as a partitioned table under `REPLICA
    /// IDENTITY FULL` when the stream started. Its changes are written by its partitions
    /// under *their* identity, and one created or attached after `enable` may lack
    /// before-images: its old rows then hold only the key (see [`Record::before`]).
    ///
    /// [`Record::before`]: crate::decode::record::Record::before
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
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
                    name,
                    type_oid,
                    type_modifier,
                    is_key,
                    kind: types.kind(type_oid),
                })
                .collect(),
            version: 1,
            partitioned: false,
        }
    }

    fn same_shape(&self, other: &Relation) -> bool {
        self.schema == other.schema
            && self.name == other.name
            && self.replica_identity == other.replica_identity
            && self.columns == other.columns
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
}

/// Primary keys read from the catalog, by table.
///
/// Under `REPLICA IDENTITY FULL` the Relation message flags *every* column as part of the
/// key (the identity is the whole row), but a consumer means the primary key when it asks
/// for a record's key. Relations of tables listed here report their primary key columns
/// instead; tables not listed (or without a primary key) keep what the server flagged.
#[derive(Debug, Clone, Default)]
pub struct PrimaryKeys {
    keys: HashMap<(String, String), Vec<String>>,
    partitioned: HashSet<(String, String)>,
}

impl PrimaryKeys {
    /// None known.
    pub fn new() -> PrimaryKeys {
        PrimaryKeys::default()
    }

    /// Records the primary key columns of `schema.table`.
    pub fn insert(&mut self, schema: &str, table: &str, columns: Vec<String>) {
        self.keys
            .insert((schema.to_owned(), table.to_owned()), columns);
    }

    /// The primary key columns of `schema.table`, if known.
    pub fn get(&self, schema: &str, table: &str) -> Option<&[String]> {
        self.keys
            .get(&(schema.to_owned(), table.to_owned()))
            .map(Vec::as_slice)
    }

    /// Records that `schema.table` is a partitioned table (see
    /// [`Relation::is_partitioned`]).
    pub fn mark_partitioned(&mut self, schema: &str, table: &str) {
        self.partitioned
            .insert((schema.to_owned(), table.to_owned()));
    }

    fn is_partitioned(&self, schema: &str, table: &str) -> bool {
        self.partitioned
            .contains(&(schema.to_owned(), table.to_owned()))
    }
}

/// Relations and types seen on one connection.
#[derive(Debug, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Arc<Relation>>,
    types: TypeCatalog,
    primary_keys: PrimaryKeys,
}

impl RelationCache {
    /// An empty cache with the built-in types, plus whatever `types` knows about the
    /// database's own types (domains, enums, their arrays).
    pub fn new(types: TypeCatalog) -> RelationCache {
        RelationCache {
            relations: HashMap::new(),
            types,
            primary_keys: PrimaryKeys::new(),
        }
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
                    name: c.name.clone(),
                    type_oid: c.type_oid,
                    type_modifier: c.type_modifier,
                    is_key: c.is_key(),
                    kind: self.types.kind(c.type_oid),
                })
                .collect(),
            version: 1,
            partitioned: false,
        };
        if relation.replica_identity == ReplicaIdentity::Full {
            relation.partitioned = self
                .primary_keys
                .is_partitioned(&relation.schema, &relation.name);
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

    /// Takes a Type message: a domain over a built-in type decodes as that type from then
    /// on (see [`TypeCatalog::apply_type_message`]). It precedes the Relation message that
    /// uses the type, so the relation's columns pick it up.
    pub fn apply_type(&mut self, message: &pgoutput::TypeMessage) {
        self.types
            .apply_type_message(message.id, &message.namespace, &message.name);
    }

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
