//! What the OpenAPI document says of one operation, as data: each method of a row of the route
//! table (`table.rs`) carries a `Doc`, and `openapi.rs` builds the document's paths from them.
//! A leaf: the wire types come in as `ToSchema` types through [`json`] and [`named`].

use std::borrow::Cow;

use utoipa::openapi::schema::Schema as Component;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// One operation: its id (stable: clients generate code from it), a one-line summary, its tag,
/// its parameters (path parameters in the order of the path's `{param}`, `{second}`), its
/// request body and its answers. Security comes from the row's access rule.
pub struct Doc {
    pub id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub params: &'static [Param],
    pub request: Option<Body>,
    pub answers: &'static [Answer],
}

/// A parameter of an operation.
pub struct Param {
    pub name: &'static str,
    pub place: Place,
    pub required: bool,
    pub description: &'static str,
    pub schema: Schema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Path,
    Query,
    Header,
}

/// A request body.
pub struct Body {
    pub description: Option<&'static str>,
    pub content: Content,
}

/// One answer: a status (`"200"`, `"default"`), what it means, and its media types.
pub struct Answer {
    pub status: &'static str,
    pub description: &'static str,
    pub content: &'static [Content],
}

/// A media type and the schema of its body.
pub struct Content {
    pub media: &'static str,
    pub schema: Schema,
}

/// The schema of a body or a parameter.
#[derive(Clone, Copy)]
pub enum Schema {
    /// A string.
    Text,
    /// Any JSON object.
    Object,
    /// An integer within bounds.
    Integer { minimum: u32, maximum: u32 },
    /// A wire type: a reference to its component.
    Named(Named),
}

/// A wire type's schema: its component name, the component, and the components it refers to.
#[derive(Clone, Copy)]
pub struct Named {
    pub name: fn() -> Cow<'static, str>,
    pub component: fn() -> RefOr<Component>,
    pub references: fn(&mut Vec<(String, RefOr<Component>)>),
}

/// The schema of the wire type `T`.
pub const fn named<T: ToSchema>() -> Schema {
    Schema::Named(Named {
        name: T::name,
        component: T::schema,
        references: T::schemas,
    })
}

/// `application/json` with the wire type `T`.
pub const fn json<T: ToSchema>() -> Content {
    Content {
        media: "application/json",
        schema: named::<T>(),
    }
}

/// A JSON request body of the wire type `T`.
pub const fn body<T: ToSchema>() -> Option<Body> {
    Some(Body {
        description: None,
        content: json::<T>(),
    })
}

/// A required path parameter (a string).
pub const fn path(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        place: Place::Path,
        required: true,
        description,
        schema: Schema::Text,
    }
}

/// A query parameter (a string).
pub const fn query(name: &'static str, required: bool, description: &'static str) -> Param {
    Param {
        name,
        place: Place::Query,
        required,
        description,
        schema: Schema::Text,
    }
}

/// An answer with one media type.
pub const fn answer(
    status: &'static str,
    description: &'static str,
    content: &'static [Content],
) -> Answer {
    Answer {
        status,
        description,
        content,
    }
}
