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
//! reads `pg_type` at each stream start), else as text. Their names are kept for the
//! column lists of schema records.
//!
//! ## Projection
//!
//! A table's [`Projection`] is applied here, when its Relation message arrives: the
//! relation keeps only the chosen columns, and the decoder cuts every tuple of that table
//! down to them (`TupleData::project`) before a record is made. A left-out column is
//! therefore in no image, key or before-image, nor in any record's bytes.
//!
//! ## Schema changes
//!
//! A Relation message whose (projected) columns differ from the ones known for the relation
//! id — by name, type or type modifier — is a schema change: [`RelationCache::apply_relation`]
//! returns the previous relation with the new one, and the decoder makes a schema record of
//! them. The relation known is the one of this connection, or else the *baseline* handed
//! over from the previous connection (a reconnect re-sends every Relation message; the same
//! columns again are no change). Key flags and the replica identity are not part of it.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::decode::escape;
use crate::decode::type_names::builtin_type_name;
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
    /// Which of the message's columns `columns` kept (`None`: all of them); tuples of
    /// this relation are cut down with it.
    kept: Option<Arc<[bool]>>,
    /// Whether the server guarantees its column text is UTF-8 (see [`Relation::text_is_utf8`]).
    text_utf8: bool,
    /// `"schema.name"` as the JSON line writes the table, escaped once here, not per row.
    json_name: Box<[u8]>,
}

/// One published column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    name: String,
    type_oid: u32,
    type_modifier: i32,
    is_key: bool,
    kind: ValueKind,
    /// The name a Type message gave a type of the database's own.
    type_name: Option<Arc<str>>,
    /// `"name":` as the JSON writer puts it before the value, escaped once here.
    json_key: Box<[u8]>,
}

/// Which columns of a table its records carry. Left-out columns are dropped before a
/// record is made, so they reach no output — current image, before-image and key alike.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Projection {
    /// Every published column.
    #[default]
    All,
    /// Only these columns (plus the key columns, which records always carry). Columns
    /// added to the table later are left out until listed.
    Only(Vec<String>),
    /// Every column but these. Columns added to the table later are included.
    Except(Vec<String>),
}

impl Projection {
    /// Whether records carry column `name`.
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            Projection::All => true,
            Projection::Only(names) => names.iter().any(|n| n == name),
            Projection::Except(names) => !names.iter().any(|n| n == name),
        }
    }

    /// The column names it lists (none for `All`).
    pub fn names(&self) -> &[String] {
        match self {
            Projection::All => &[],
            Projection::Only(names) | Projection::Except(names) => names,
        }
    }
}

/// Per relation id: what to leave out of its records.
pub type Projections = HashMap<u32, Projection>;

/// Per relation id: the relation the last connection knew, to tell a schema change from a
/// Relation message re-sent after a reconnect.
pub type Baseline = HashMap<u32, Arc<Relation>>;

/// What a Relation message did to the cache.
#[derive(Debug)]
pub struct Applied {
    /// The relation now in force.
    pub relation: Arc<Relation>,
    /// The relation before it, when the columns changed (a schema change).
    pub previous: Option<Arc<Relation>>,
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

    /// Which columns of the server's tuples this relation keeps, when a projection left
    /// some out.
    pub(crate) fn kept(&self) -> Option<&[bool]> {
        self.kept.as_deref()
    }

    /// Whether `other` has the same columns: names, types and type modifiers, in order.
    /// Differing columns are a schema change; key flags and replica identity are not.
    pub fn same_columns(&self, other: &Relation) -> bool {
        self.columns.len() == other.columns.len()
            && self.columns.iter().zip(&other.columns).all(|(a, b)| {
                a.name == b.name && a.type_oid == b.type_oid && a.type_modifier == b.type_modifier
            })
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

    /// `"schema.name"`, the line's `table` field.
    pub(crate) fn json_name(&self) -> &[u8] {
        &self.json_name
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
            json_name: escape::table_name(&schema, &name),
            id,
            schema,
            name,
            replica_identity,
            columns: columns
                .into_iter()
                .map(|(name, type_oid, type_modifier, is_key)| Column {
                    json_key: escape::object_key(&name),
                    name,
                    type_oid,
                    type_modifier,
                    is_key,
                    kind: types.kind(type_oid),
                    type_name: None,
                })
                .collect(),
            version: 1,
            partitioned: false,
            kept: None,
            // Backfill rows come through tokio-postgres as `String`s: UTF-8 checked.
            text_utf8: true,
        }
    }

    /// A relation as stored with a group's cursor (see `group::shapes`): `columns` are
    /// (name, type OID, type modifier, is key, type name).
    pub(crate) fn stored(
        id: u32,
        schema: String,
        name: String,
        columns: Vec<(String, u32, i32, bool, String)>,
        types: &TypeCatalog,
    ) -> Relation {
        let names: Vec<String> = columns.iter().map(|c| c.4.clone()).collect();
        let mut relation = Relation::from_catalog(
            id,
            schema,
            name,
            ReplicaIdentity::Default,
            columns
                .into_iter()
                .map(|(name, oid, modifier, key, _)| (name, oid, modifier, key))
                .collect(),
            types,
        );
        for (column, type_name) in relation.columns.iter_mut().zip(names) {
            if column.type_name() != type_name {
                column.type_name = Some(type_name.into());
            }
        }
        relation
    }

    fn same_shape(&self, other: &Relation) -> bool {
        self.schema == other.schema
            && self.name == other.name
            && self.replica_identity == other.replica_identity
            && self.columns == other.columns
            && self.kept == other.kept
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

    /// The type's name (`pg_type.typname`: `int4`, `_text` for `text[]`, `schema.name` for
    /// a type of the database's own), or `""` when the server never named it.
    pub fn type_name(&self) -> &str {
        match &self.type_name {
            Some(name) => name,
            None => builtin_type_name(self.type_oid).unwrap_or(""),
        }
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

/// Hashes a relation id (an OID) with one multiplication (Fibonacci hashing). The cache is
/// looked up for every change, and SipHash, the default, cost a tenth of decoding a row;
/// its resistance to chosen keys buys nothing for ids the server assigns.
#[derive(Debug, Default, Clone, Copy)]
struct OidHasher(u64);

impl Hasher for OidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u32(&mut self, oid: u32) {
        self.0 = u64::from(oid).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    /// Not used for `u32` keys; correct for any, should the key type change.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// Relations and types seen on one connection.
#[derive(Debug, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Arc<Relation>, BuildHasherDefault<OidHasher>>,
    types: TypeCatalog,
    primary_keys: PrimaryKeys,
    projections: Projections,
    baseline: Baseline,
    /// Names of the database's own types, from Type messages.
    type_names: HashMap<u32, Arc<str>>,
    text_utf8: bool,
}

impl RelationCache {
    /// An empty cache with the built-in types, plus whatever `types` knows about the
    /// database's own types (domains, enums, their arrays).
    pub fn new(types: TypeCatalog) -> RelationCache {
        RelationCache {
            relations: HashMap::default(),
            types,
            primary_keys: PrimaryKeys::new(),
            projections: Projections::new(),
            baseline: Baseline::new(),
            type_names: HashMap::new(),
            text_utf8: false,
        }
    }

    /// Leaves columns out of these relations' records.
    pub fn with_projections(mut self, projections: Projections) -> RelationCache {
        self.projections = projections;
        self
    }

    /// The relations the previous connection knew: a Relation message with other columns
    /// than these is a schema change even as the first on this connection.
    pub fn with_baseline(mut self, baseline: Baseline) -> RelationCache {
        self.baseline = baseline;
        self
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

    /// Takes a Relation message; returns the relation now in force, and the one before it
    /// when the columns changed.
    pub fn apply_relation(&mut self, message: &pgoutput::Relation) -> Applied {
        let mut relation = Relation {
            json_name: escape::table_name(&message.namespace, &message.name),
            id: message.id,
            schema: message.namespace.clone(),
            name: message.name.clone(),
            replica_identity: message.replica_identity,
            columns: message
                .columns
                .iter()
                .map(|c| Column {
                    json_key: escape::object_key(&c.name),
                    name: c.name.clone(),
                    type_oid: c.type_oid,
                    type_modifier: c.type_modifier,
                    is_key: c.is_key(),
                    kind: self.types.kind(c.type_oid),
                    type_name: self.type_names.get(&c.type_oid).cloned(),
                })
                .collect(),
            version: 1,
            partitioned: false,
            kept: None,
            text_utf8: self.text_utf8,
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
        if let Some(projection) = self.projections.get(&message.id) {
            // Not `is_key ||`: under FULL without a primary key every column is flagged as
            // key. The consumer puts the key columns into an `Only` list itself.
            let kept: Vec<bool> = relation
                .columns
                .iter()
                .map(|c| projection.keeps(&c.name))
                .collect();
            if kept.contains(&false) {
                let mut flags = kept.iter();
                relation
                    .columns
                    .retain(|_| flags.next().copied().unwrap_or(true));
                relation.kept = Some(kept.into());
            }
        }
        let known = self
            .relations
            .get(&message.id)
            .or_else(|| self.baseline.get(&message.id));
        let mut changed = None;
        if let Some(previous) = known {
            if !previous.same_columns(&relation) {
                changed = Some(Arc::clone(previous));
            }
        }
        if let Some(previous) = self.relations.get(&message.id) {
            if previous.same_shape(&relation) {
                return Applied {
                    relation: Arc::clone(previous),
                    previous: None,
                };
            }
            relation.version = previous.version + 1;
        }
        let relation = Arc::new(relation);
        self.relations.insert(message.id, Arc::clone(&relation));
        Applied {
            relation,
            previous: changed,
        }
    }

    /// Takes a Type message: a domain over a built-in type decodes as that type from then
    /// on (see [`TypeCatalog::apply_type_message`]), and the type's name is kept for the
    /// column lists of schema records. It precedes the Relation message that uses the type,
    /// so the relation's columns pick it up.
    pub fn apply_type(&mut self, message: &pgoutput::TypeMessage) {
        self.types
            .apply_type_message(message.id, &message.namespace, &message.name);
        self.type_names.insert(
            message.id,
            format!("{}.{}", message.namespace, message.name).into(),
        );
    }

    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))] // for tests
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

    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))] // for tests
    /// Forgets everything learnt from the stream (after a reconnect).
    pub fn clear(&mut self) {
        self.relations.clear();
    }
}
