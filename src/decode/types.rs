//! Which decoder a column's text goes through, resolved once per relation column.
//!
//! pgoutput describes every column of a Relation message by its type OID; the values that
//! follow are the text the type's output function printed. Looking the OID up for every
//! value would put a hash probe on the hot path, so the relation cache asks
//! [`TypeCatalog::kind`] once per column and keeps the resulting [`ValueKind`] beside it.
//!
//! Built-in OIDs below 10000 are fixed by PostgreSQL's catalog headers and identical on
//! every server version this crate supports (15–18); they are matched here directly. Types a
//! database defines itself — enums, domains, composites, ranges, and the array types of all
//! of those — get OIDs at `CREATE TYPE` time, so the decode layer registers them in a
//! [`TypeCatalog`] from Type (`Y`) messages and `pg_type`. An OID nobody registered is decoded
//! as text, which is always faithful: it is exactly what the server printed.

use std::collections::HashMap;

/// Built-in type OIDs this crate decodes to something other than text.
///
/// Values from `pg_type.oid` (PostgreSQL `src/include/catalog/pg_type.dat`).
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `"char"` (the one-byte internal type, not `char(n)`)
    pub const CHAR: u32 = 18;
    /// `name`
    pub const NAME: u32 = 19;
    /// `int8` / `bigint`
    pub const INT8: u32 = 20;
    /// `int2` / `smallint`
    pub const INT2: u32 = 21;
    /// `int4` / `integer`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `oid`
    pub const OID: u32 = 26;
    /// `json`
    pub const JSON: u32 = 114;
    /// `xml`
    pub const XML: u32 = 142;
    /// `box` — the one built-in type whose array delimiter is `;`
    pub const BOX: u32 = 603;
    /// `cidr`
    pub const CIDR: u32 = 650;
    /// `float4` / `real`
    pub const FLOAT4: u32 = 700;
    /// `float8` / `double precision`
    pub const FLOAT8: u32 = 701;
    /// `macaddr8`
    pub const MACADDR8: u32 = 774;
    /// `money`
    pub const MONEY: u32 = 790;
    /// `macaddr`
    pub const MACADDR: u32 = 829;
    /// `inet`
    pub const INET: u32 = 869;
    /// `bpchar` / `char(n)`
    pub const BPCHAR: u32 = 1042;
    /// `varchar`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `time`
    pub const TIME: u32 = 1083;
    /// `timestamp` (without time zone)
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `interval`
    pub const INTERVAL: u32 = 1186;
    /// `timetz`
    pub const TIMETZ: u32 = 1266;
    /// `bit`
    pub const BIT: u32 = 1560;
    /// `varbit`
    pub const VARBIT: u32 = 1562;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
    /// `pg_lsn`
    pub const PG_LSN: u32 = 3220;
    /// `jsonb`
    pub const JSONB: u32 = 3802;
}

/// How the text of a scalar (non-array) value is decoded and rendered as JSON.
///
/// See [`Value`](super::value::Value) for the JSON form of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScalarKind {
    /// `bool`: `t` / `f`.
    Bool,
    /// `int2`, `int4`, `int8`: a JSON number.
    Int,
    /// `float4`, `float8`: a JSON number with the server's shortest exact digits.
    Float,
    /// `numeric`: a JSON number with the exact digits.
    Numeric,
    /// Everything kept as its PostgreSQL text (text, varchar, uuid, interval, money, inet,
    /// enums, ranges, composites, unknown types...).
    Text,
    /// `json`, `jsonb`: embedded JSON.
    Json,
    /// `bytea`: the `\x…` hex text.
    Bytea,
    /// `date`.
    Date,
    /// `time` (without time zone).
    Time,
    /// `timetz`.
    TimeTz,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`: rendered in UTC with `Z`.
    TimestampTz,
}

/// How a column's text is decoded: a scalar kind, or an array of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A single value.
    Scalar(ScalarKind),
    /// An array literal (`{…}`, any number of dimensions) whose elements have `element`
    /// kind and are separated by `delimiter` (`,` for every built-in type except `box`,
    /// which uses `;`).
    Array {
        /// The kind of each element.
        element: ScalarKind,
        /// The element separator, `pg_type.typdelim` of the element type.
        delimiter: u8,
    },
}

impl ValueKind {
    /// Text: the kind of every type this crate has no better form for.
    pub const TEXT: ValueKind = ValueKind::Scalar(ScalarKind::Text);

    /// The kind of a built-in type OID; any other OID (user-defined types included) is
    /// [`ValueKind::TEXT`]. Use a type catalog to also resolve enums, domains and their
    /// arrays.
    pub fn for_type(oid: u32) -> ValueKind {
        if let Some(kind) = builtin_scalar(oid) {
            return ValueKind::Scalar(kind);
        }
        match builtin_array_element(oid) {
            Some(element) => ValueKind::Array {
                element: builtin_scalar(element).unwrap_or(ScalarKind::Text),
                delimiter: if element == oid::BOX { b';' } else { b',' },
            },
            None => ValueKind::TEXT,
        }
    }

    /// The scalar kind, or for an array the kind of its elements.
    pub fn scalar(self) -> ScalarKind {
        match self {
            ValueKind::Scalar(kind) => kind,
            ValueKind::Array { element, .. } => element,
        }
    }
}

/// The kind of a built-in scalar type that is not plain text.
fn builtin_scalar(type_oid: u32) -> Option<ScalarKind> {
    use oid::*;
    Some(match type_oid {
        BOOL => ScalarKind::Bool,
        INT2 | INT4 | INT8 => ScalarKind::Int,
        FLOAT4 | FLOAT8 => ScalarKind::Float,
        NUMERIC => ScalarKind::Numeric,
        JSON | JSONB => ScalarKind::Json,
        BYTEA => ScalarKind::Bytea,
        DATE => ScalarKind::Date,
        TIME => ScalarKind::Time,
        TIMETZ => ScalarKind::TimeTz,
        TIMESTAMP => ScalarKind::Timestamp,
        TIMESTAMPTZ => ScalarKind::TimestampTz,
        // Text-like built-ins are listed so that `for_type` documents them; they decode
        // as text like any unknown OID would.
        // `oid` is text as in to_jsonb: an identifier, not a quantity.
        OID | CHAR | NAME | TEXT | XML | CIDR | MACADDR8 | MONEY | MACADDR | INET | BPCHAR
        | VARCHAR | INTERVAL | BIT | VARBIT | UUID | PG_LSN | BOX => ScalarKind::Text,
        _ => return None,
    })
}

/// `(array type OID, element type OID)` of every built-in base type below 10000 that has an
/// array type, from `SELECT a.oid, e.oid FROM pg_type a JOIN pg_type e ON e.typarray = a.oid
/// WHERE a.oid < 10000`. Elements without a better kind decode as text.
const BUILTIN_ARRAYS: &[(u32, u32)] = &[
    (1000, 16),   // bool
    (1001, 17),   // bytea
    (1002, 18),   // char
    (1003, 19),   // name
    (1016, 20),   // int8
    (1005, 21),   // int2
    (1006, 22),   // int2vector
    (1007, 23),   // int4
    (1008, 24),   // regproc
    (1009, 25),   // text
    (1028, 26),   // oid
    (1010, 27),   // tid
    (1011, 28),   // xid
    (1012, 29),   // cid
    (1013, 30),   // oidvector
    (199, 114),   // json
    (143, 142),   // xml
    (1017, 600),  // point
    (1018, 601),  // lseg
    (1019, 602),  // path
    (1020, 603),  // box (delimiter ';')
    (1027, 604),  // polygon
    (629, 628),   // line
    (651, 650),   // cidr
    (1021, 700),  // float4
    (1022, 701),  // float8
    (719, 718),   // circle
    (775, 774),   // macaddr8
    (791, 790),   // money
    (1040, 829),  // macaddr
    (1041, 869),  // inet
    (1034, 1033), // aclitem
    (1014, 1042), // bpchar
    (1015, 1043), // varchar
    (1182, 1082), // date
    (1183, 1083), // time
    (1115, 1114), // timestamp
    (1185, 1184), // timestamptz
    (1187, 1186), // interval
    (1270, 1266), // timetz
    (1561, 1560), // bit
    (1563, 1562), // varbit
    (1231, 1700), // numeric
    (2201, 1790), // refcursor
    (2207, 2202), // regprocedure
    (2208, 2203), // regoper
    (2209, 2204), // regoperator
    (2210, 2205), // regclass
    (2211, 2206), // regtype
    (1263, 2275), // cstring
    (2951, 2950), // uuid
    (2949, 2970), // txid_snapshot
    (3221, 3220), // pg_lsn
    (3643, 3614), // tsvector
    (3645, 3615), // tsquery
    (3644, 3642), // gtsvector
    (3735, 3734), // regconfig
    (3770, 3769), // regdictionary
    (3807, 3802), // jsonb
    (3905, 3904), // int4range
    (3907, 3906), // numrange
    (3909, 3908), // tsrange
    (3911, 3910), // tstzrange
    (3913, 3912), // daterange
    (3927, 3926), // int8range
    (4073, 4072), // jsonpath
    (4090, 4089), // regnamespace
    (4097, 4096), // regrole
    (4192, 4191), // regcollation
    (6150, 4451), // int4multirange
    (6151, 4532), // nummultirange
    (6152, 4533), // tsmultirange
    (6153, 4534), // tstzmultirange
    (6155, 4535), // datemultirange
    (6157, 4536), // int8multirange
    (5039, 5038), // pg_snapshot
    (271, 5069),  // xid8
];

/// `pg_catalog` names of the built-in scalar types that decode as something other than
/// text, for Type messages: pgoutput describes a domain by *its base type's* schema and
/// name (`logicalrep_write_typ` looks up `getBaseType`), so a domain over `int4` arrives
/// as `pg_catalog.int4`, and one over `int4[]` as `pg_catalog._int4`.
const BUILTIN_NAMES: &[(&str, u32)] = &[
    ("bool", oid::BOOL),
    ("bytea", oid::BYTEA),
    ("int8", oid::INT8),
    ("int2", oid::INT2),
    ("int4", oid::INT4),
    ("json", oid::JSON),
    ("float4", oid::FLOAT4),
    ("float8", oid::FLOAT8),
    ("date", oid::DATE),
    ("time", oid::TIME),
    ("timestamp", oid::TIMESTAMP),
    ("timestamptz", oid::TIMESTAMPTZ),
    ("timetz", oid::TIMETZ),
    ("numeric", oid::NUMERIC),
    ("jsonb", oid::JSONB),
];

/// The OID of the built-in type `pg_catalog.name` (or of its array, `_name`) when it
/// decodes as something other than text.
fn builtin_by_name(name: &str) -> Option<u32> {
    let scalar = |n: &str| {
        BUILTIN_NAMES
            .iter()
            .find(|(known, _)| *known == n)
            .map(|(_, oid)| *oid)
    };
    match name.strip_prefix('_') {
        Some(element) => {
            let element = scalar(element)?;
            BUILTIN_ARRAYS
                .iter()
                .find(|(_, e)| *e == element)
                .map(|(array, _)| *array)
        }
        None => scalar(name),
    }
}

fn builtin_array_element(array_oid: u32) -> Option<u32> {
    BUILTIN_ARRAYS
        .iter()
        .find(|(array, _)| *array == array_oid)
        .map(|(_, element)| *element)
}

/// Type OIDs a database defined itself, registered so their columns decode by what they
/// really are: a domain like its base type, an array of a domain like an array of the base.
///
/// The decode layer fills it from Type (`Y`) messages (which name an enum or composite but
/// say nothing about a domain's base) and from `pg_type` (`typtype`, `typbasetype`,
/// `typelem`, `typdelim`). Registration order does not matter for lookups of built-in
/// bases; a domain over another user type should be registered after that type.
#[derive(Debug, Clone, Default)]
pub struct TypeCatalog {
    custom: HashMap<u32, ValueKind>,
}

impl TypeCatalog {
    /// An empty catalog: built-in types only.
    pub fn new() -> TypeCatalog {
        TypeCatalog::default()
    }

    /// The kind of `type_oid`: built-in first, then what was registered, else text.
    pub fn kind(&self, type_oid: u32) -> ValueKind {
        match ValueKind::for_type(type_oid) {
            ValueKind::Scalar(ScalarKind::Text) => self
                .custom
                .get(&type_oid)
                .copied()
                .unwrap_or(ValueKind::TEXT),
            kind => kind,
        }
    }

    /// Registers `type_oid` as a domain over `base_oid`: its values decode like the base
    /// type's (a domain over `int4` gives numbers, over `int4[]` arrays of numbers).
    pub fn add_domain(&mut self, type_oid: u32, base_oid: u32) {
        let kind = self.kind(base_oid);
        self.custom.insert(type_oid, kind);
    }

    /// Registers `type_oid` as an enum. Enum labels are text; registering one is optional
    /// but documents the column.
    pub fn add_enum(&mut self, type_oid: u32) {
        self.custom.insert(type_oid, ValueKind::TEXT);
    }

    /// Registers `array_oid` as an array whose elements are `element_oid` (`pg_type.typelem`)
    /// separated by `delimiter` (`pg_type.typdelim` of the element, `,` for almost every
    /// type). The element kind is resolved now, so register the element type first.
    pub fn add_array(&mut self, array_oid: u32, element_oid: u32, delimiter: u8) {
        let element = self.kind(element_oid).scalar();
        self.custom
            .insert(array_oid, ValueKind::Array { element, delimiter });
    }

    /// Takes what a Type (`Y`) message says: `type_oid` is described by `namespace.name`,
    /// which for a domain is its *base* type. A domain over a built-in type that decodes as
    /// something other than text (a number, a date, JSON, an array of those) is registered
    /// as that type; anything else (enums, composites, domains over user types, arrays of
    /// domains) keeps what the catalog was told, since the message cannot say more.
    pub fn apply_type_message(&mut self, type_oid: u32, namespace: &str, name: &str) {
        if namespace != "pg_catalog" || type_oid < 10_000 {
            return;
        }
        if let Some(base) = builtin_by_name(name) {
            self.add_domain(type_oid, base);
        }
    }

    /// Forgets a registered type (e.g. after `DROP TYPE` was seen in a new Relation message).
    pub fn remove(&mut self, type_oid: u32) {
        self.custom.remove(&type_oid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_scalars() {
        assert_eq!(ValueKind::for_type(23), ValueKind::Scalar(ScalarKind::Int));
        assert_eq!(ValueKind::for_type(20), ValueKind::Scalar(ScalarKind::Int));
        assert_eq!(ValueKind::for_type(26), ValueKind::TEXT);
        assert_eq!(
            ValueKind::for_type(700),
            ValueKind::Scalar(ScalarKind::Float)
        );
        assert_eq!(
            ValueKind::for_type(1700),
            ValueKind::Scalar(ScalarKind::Numeric)
        );
        assert_eq!(
            ValueKind::for_type(114),
            ValueKind::Scalar(ScalarKind::Json)
        );
        assert_eq!(
            ValueKind::for_type(3802),
            ValueKind::Scalar(ScalarKind::Json)
        );
        assert_eq!(
            ValueKind::for_type(1184),
            ValueKind::Scalar(ScalarKind::TimestampTz)
        );
        assert_eq!(ValueKind::for_type(2950), ValueKind::TEXT);
        assert_eq!(ValueKind::for_type(3904), ValueKind::TEXT); // int4range
        assert_eq!(ValueKind::for_type(99_999), ValueKind::TEXT);
    }

    #[test]
    fn builtin_arrays() {
        assert_eq!(
            ValueKind::for_type(1007),
            ValueKind::Array {
                element: ScalarKind::Int,
                delimiter: b','
            }
        );
        assert_eq!(
            ValueKind::for_type(3807),
            ValueKind::Array {
                element: ScalarKind::Json,
                delimiter: b','
            }
        );
        assert_eq!(
            ValueKind::for_type(1020),
            ValueKind::Array {
                element: ScalarKind::Text,
                delimiter: b';'
            }
        );
        assert_eq!(
            ValueKind::for_type(1185),
            ValueKind::Array {
                element: ScalarKind::TimestampTz,
                delimiter: b','
            }
        );
        // Every table entry names a distinct array type.
        for (i, (a, _)) in BUILTIN_ARRAYS.iter().enumerate() {
            assert!(BUILTIN_ARRAYS[i + 1..].iter().all(|(b, _)| a != b), "{a}");
        }
    }

    #[test]
    fn type_messages_register_domains_over_builtins() {
        let mut catalog = TypeCatalog::new();
        // What pgoutput sends for domains over int4, numeric, text and int8[], and for an
        // enum and an array of a domain (their own names in a user schema).
        catalog.apply_type_message(60_000, "pg_catalog", "int4");
        catalog.apply_type_message(60_001, "pg_catalog", "numeric");
        catalog.apply_type_message(60_002, "pg_catalog", "text");
        catalog.apply_type_message(60_003, "pg_catalog", "_int8");
        catalog.apply_type_message(60_004, "public", "mood");
        catalog.apply_type_message(60_005, "public", "_posint");
        assert_eq!(catalog.kind(60_000), ValueKind::Scalar(ScalarKind::Int));
        assert_eq!(catalog.kind(60_001), ValueKind::Scalar(ScalarKind::Numeric));
        assert_eq!(catalog.kind(60_002), ValueKind::TEXT);
        assert_eq!(
            catalog.kind(60_003),
            ValueKind::Array {
                element: ScalarKind::Int,
                delimiter: b','
            }
        );
        assert_eq!(catalog.kind(60_004), ValueKind::TEXT);
        assert_eq!(catalog.kind(60_005), ValueKind::TEXT);
        // A message never overrides a built-in OID.
        catalog.apply_type_message(23, "pg_catalog", "text");
        assert_eq!(catalog.kind(23), ValueKind::Scalar(ScalarKind::Int));
        // Every name maps to its own OID.
        for (name, oid) in BUILTIN_NAMES {
            assert_eq!(builtin_by_name(name), Some(*oid), "{name}");
            assert_eq!(
                ValueKind::for_type(*oid).scalar(),
                builtin_scalar(*oid).unwrap()
            );
        }
    }

    #[test]
    fn catalog_resolves_domains_enums_and_their_arrays() {
        let mut catalog = TypeCatalog::new();
        catalog.add_domain(50_000, 23); // CREATE DOMAIN positive AS int4
        catalog.add_domain(50_001, 50_000); // a domain over that domain
        catalog.add_array(50_002, 50_000, b','); // _positive
        catalog.add_enum(50_003);
        catalog.add_domain(50_004, 1009); // domain over text[]
        assert_eq!(catalog.kind(50_000), ValueKind::Scalar(ScalarKind::Int));
        assert_eq!(catalog.kind(50_001), ValueKind::Scalar(ScalarKind::Int));
        assert_eq!(
            catalog.kind(50_002),
            ValueKind::Array {
                element: ScalarKind::Int,
                delimiter: b','
            }
        );
        assert_eq!(catalog.kind(50_003), ValueKind::TEXT);
        assert_eq!(
            catalog.kind(50_004),
            ValueKind::Array {
                element: ScalarKind::Text,
                delimiter: b','
            }
        );
        assert_eq!(catalog.kind(23), ValueKind::Scalar(ScalarKind::Int));
        catalog.remove(50_000);
        assert_eq!(catalog.kind(50_000), ValueKind::TEXT);
    }
}
