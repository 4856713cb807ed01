//! Message catalogues (Fluent, from `admin-ui/locales/`, embedded in the binary) and the
//! choice of language: zh-CN by default, English on request.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use std::sync::LazyLock;
use unic_langid::LanguageIdentifier;

/// The languages pages are written in; the first is the default.
pub const LOCALES: [&str; 2] = ["zh-CN", "en"];
pub const DEFAULT_LOCALE: &str = LOCALES[0];

const SOURCES: [(&str, &str); 2] = [
    ("zh-CN", include_str!("../../../admin-ui/locales/zh-CN/main.ftl")),
    ("en", include_str!("../../../admin-ui/locales/en/main.ftl")),
];

static BUNDLES: LazyLock<Vec<(&'static str, FluentBundle<FluentResource>)>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|(lang, text)| {
            let id: LanguageIdentifier = lang.parse().expect("catalogue language is a valid tag");
            let resource = FluentResource::try_new(text.to_string())
                .unwrap_or_else(|(_, errors)| panic!("admin-ui/locales/{lang}/main.ftl does not parse: {errors:?}"));
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            // Pages are plain HTML; Unicode isolation marks would show up in copied text.
            bundle.set_use_isolating(false);
            bundle.add_resource(resource).expect("message ids are unique");
            (*lang, bundle)
        })
        .collect()
});

/// A form field's error as the engine or store gave it: a message id (`err-…`, e.g. a
/// check-in code's) in `lang`, else the text as it is (the schema checks, already worded).
pub fn field_message(lang: &str, message: &str) -> String {
    if message.starts_with("err-") {
        text(lang, message, &[])
    } else {
        message.to_string()
    }
}

/// The supported locale `tag` names, if any (`en-GB` → `en`, `zh` → `zh-CN`).
pub fn supported(tag: &str) -> Option<&'static str> {
    let wanted: LanguageIdentifier = tag.trim().parse().ok()?;
    LOCALES.into_iter().find(|l| {
        let have: LanguageIdentifier = l.parse().expect("valid");
        have.language == wanted.language
    })
}

/// The best locale for an `Accept-Language` header.
pub fn from_accept_language(header: &str) -> Option<&'static str> {
    let requested = fluent_langneg::accepted_languages::parse(header);
    let available: Vec<LanguageIdentifier> = LOCALES.iter().map(|l| l.parse().expect("valid")).collect();
    let default: LanguageIdentifier = DEFAULT_LOCALE.parse().expect("valid");
    fluent_langneg::negotiate_languages(
        &requested,
        &available,
        Some(&default),
        fluent_langneg::NegotiationStrategy::Lookup,
    )
    .first()
    .and_then(|l| supported(&l.to_string()))
}

/// Whether `lang`'s own catalogue has message `id` (no fallback).
pub fn has_message(lang: &str, id: &str) -> bool {
    BUNDLES.iter().any(|(l, bundle)| *l == lang && bundle.has_message(id))
}

/// Message `id` in `lang` with `args`; falls back to zh-CN, then to the id itself so a
/// missing message shows rather than breaks a page.
pub fn text(lang: &str, id: &str, args: &[(&str, FluentValue<'_>)]) -> String {
    let args = (!args.is_empty()).then(|| {
        let mut a = FluentArgs::new();
        for (k, v) in args {
            a.set(*k, v.clone());
        }
        a
    });
    for want in [lang, DEFAULT_LOCALE] {
        let Some((_, bundle)) = BUNDLES.iter().find(|(l, _)| *l == want) else {
            continue;
        };
        if let Some(pattern) = bundle.get_message(id).and_then(|m| m.value()) {
            let mut errors = Vec::new();
            let out = bundle.format_pattern(pattern, args.as_ref(), &mut errors);
            if !errors.is_empty() {
                tracing::warn!(id, lang = want, ?errors, "message formatted with errors");
            }
            return out.into_owned();
        }
    }
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(lang: &str) -> std::collections::BTreeSet<String> {
        let (_, text) = SOURCES.iter().find(|(l, _)| *l == lang).unwrap();
        let resource = FluentResource::try_new(text.to_string()).unwrap();
        resource
            .entries()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_catalogue_has_the_same_messages() {
        let zh = ids("zh-CN");
        assert!(zh.len() > 50);
        for lang in LOCALES {
            assert_eq!(ids(lang), zh, "{lang} differs from zh-CN");
        }
    }

    #[test]
    fn languages_are_negotiated_and_messages_take_arguments() {
        assert_eq!(from_accept_language("en-GB,en;q=0.9"), Some("en"));
        assert_eq!(from_accept_language("zh-TW,zh;q=0.8"), Some("zh-CN"));
        assert_eq!(from_accept_language("fr-FR"), Some("zh-CN"));
        assert_eq!(supported("EN"), Some("en"));
        assert_eq!(supported("de"), None);
        assert_eq!(
            text("en", "task-overdue", &[("time", "2 days".into())]),
            "Overdue by 2 days"
        );
        assert_eq!(
            text("zh-CN", "err-maxLength", &[("limit", 20.into())]),
            "最多填写 20 个字符。"
        );
        assert_eq!(text("en", "duration-days", &[("n", 1.into())]), "1 day");
        assert_eq!(text("en", "no-such-message", &[]), "no-such-message");
    }
}
