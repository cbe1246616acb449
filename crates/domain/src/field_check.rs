//! The check every fact gets whatever its kind: no placeholder id (nil or max UUID) in an `_id`
//! field, no `UNRECOGNISED` code. It walks the event's fields through serde, so a field added to
//! any event is checked without being listed here, and builds nothing on the way: it runs for
//! every fact recorded, and a JSON value of each cost an import several per cent of its time.

use serde::ser::{self, Serialize};
use uuid::Uuid;

/// Payload fields holding a code (`code_enum!` values).
const CODE_FIELDS: &[&str] =
    &["care_level", "gender", "source", "decision", "reason", "attendance", "instrument", "phase"];

/// What is wrong with the first field that fails, if one does.
pub fn first_bad_field(event: &impl Serialize) -> Option<String> {
    match event.serialize(Probe { field: None }) {
        Ok(()) => None,
        Err(Refused(msg)) => Some(msg),
    }
}

/// Ids that no client may choose: the nil and the max UUID (placeholders in many systems).
fn placeholder_id(id: Uuid) -> bool {
    id.is_nil() || id == Uuid::max()
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl ser::Error for Refused {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Refused(msg.to_string())
    }
}

/// Serializes the event's top-level struct (`field` None) or one field's value (`field` Some),
/// in serde's compact form: ids as 16 bytes, codes as their index (255 for `Unrecognised`).
#[derive(Clone, Copy)]
struct Probe {
    field: Option<&'static str>,
}

impl Probe {
    fn id(self, id: Uuid) -> Result<(), Refused> {
        match self.field {
            Some(f) if f.ends_with("_id") && placeholder_id(id) => {
                Err(Refused(format!("{f}: the nil and max UUIDs are not ids")))
            }
            _ => Ok(()),
        }
    }
}

/// Compound values inside a field (a list of item scores, a time's parts) hold no id or code.
struct Skip;

macro_rules! skip_scalars {
    ($($method:ident($t:ty)),* $(,)?) => {
        $(fn $method(self, _: $t) -> Result<(), Refused> { Ok(()) })*
    };
}

macro_rules! skip_compound {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for Skip {
            type Ok = ();
            type Error = Refused;
            fn $method<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Refused> {
                Ok(())
            }
            fn end(self) -> Result<(), Refused> {
                Ok(())
            }
        })*
    };
}

skip_compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for Skip {
    type Ok = ();
    type Error = Refused;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Refused> {
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), Refused> {
        Ok(())
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Skip {
    type Ok = ();
    type Error = Refused;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, _: &T) -> Result<(), Refused> {
        Ok(())
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

/// The event's fields, each probed.
struct Fields;

impl ser::SerializeStruct for Fields {
    type Ok = ();
    type Error = Refused;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Refused> {
        value.serialize(Probe { field: Some(key) })
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

impl ser::Serializer for Probe {
    type Ok = ();
    type Error = Refused;
    type SerializeSeq = Skip;
    type SerializeTuple = Skip;
    type SerializeTupleStruct = Skip;
    type SerializeTupleVariant = Skip;
    type SerializeMap = Skip;
    type SerializeStruct = Fields;
    type SerializeStructVariant = Skip;

    fn is_human_readable(&self) -> bool {
        false
    }

    skip_scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_unit_struct(&'static str),
    );

    fn serialize_u8(self, v: u8) -> Result<(), Refused> {
        // A code in compact form: `Unrecognised` is 255, past every known code.
        match self.field {
            Some(f) if CODE_FIELDS.contains(&f) && v == u8::MAX => Err(Refused(format!(
                "{f}: {} shows a code a newer forlop stored; it cannot be recorded",
                crate::types::UNRECOGNISED
            ))),
            _ => Ok(()),
        }
    }

    fn serialize_str(self, v: &str) -> Result<(), Refused> {
        // A text field named like an id that holds one (the JSON form checked the same).
        match Uuid::parse_str(v) {
            Ok(id) => self.id(id),
            Err(_) => Ok(()),
        }
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Refused> {
        match <[u8; 16]>::try_from(v) {
            Ok(bytes) => self.id(Uuid::from_bytes(bytes)),
            Err(_) => Ok(()),
        }
    }

    fn serialize_none(self) -> Result<(), Refused> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Refused> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Refused> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Refused> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Refused> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Refused> {
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Skip, Refused> {
        Ok(Skip)
    }

    fn serialize_tuple(self, _: usize) -> Result<Skip, Refused> {
        Ok(Skip)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Skip, Refused> {
        Ok(Skip)
    }

    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Skip, Refused> {
        Ok(Skip)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Skip, Refused> {
        Ok(Skip)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields, Refused> {
        // The event itself; a field that were a struct would have its fields checked alike.
        Ok(Fields)
    }

    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Skip, Refused> {
        Ok(Skip)
    }
}
