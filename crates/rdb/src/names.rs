//! Human names of the RDB value types: `type/encoding`, as `rdbvault
//! inspect` reports them.

use crate::head::Magic;
use crate::value::types;

/// `type/encoding` of an RDB value type id (e.g. `hash/listpack`,
/// `list/quicklist`), in a dump with this magic (the two families give some
/// ids different meanings); `unknown/unknown` for an id neither family uses.
/// Module values are named by their module type (see `module_type_name`).
pub fn encoding_name(type_id: u8, magic: Magic) -> &'static str {
    if magic == Magic::Valkey && type_id == types::VALKEY_HASH_2 {
        return "hash/hashtable-ex";
    }
    match type_id {
        types::STRING => "string/raw",
        types::LIST => "list/linkedlist",
        types::SET => "set/hashtable",
        types::ZSET | types::ZSET_2 => "zset/skiplist",
        types::HASH => "hash/hashtable",
        types::MODULE_2 => "module/module",
        types::HASH_ZIPMAP => "hash/zipmap",
        types::LIST_ZIPLIST => "list/ziplist",
        types::SET_INTSET => "set/intset",
        types::ZSET_ZIPLIST => "zset/ziplist",
        types::HASH_ZIPLIST => "hash/ziplist",
        types::LIST_QUICKLIST => "list/quicklist",
        types::LIST_QUICKLIST_2 => "list/quicklist-listpack",
        types::HASH_LISTPACK => "hash/listpack",
        types::ZSET_LISTPACK => "zset/listpack",
        types::SET_LISTPACK => "set/listpack",
        types::STREAM_LISTPACKS | types::STREAM_LISTPACKS_2 | types::STREAM_LISTPACKS_3 => {
            "stream/listpacks"
        }
        types::HASH_METADATA_PRE_GA | types::HASH_METADATA => "hash/hashtable-ex",
        types::HASH_LISTPACK_EX_PRE_GA | types::HASH_LISTPACK_EX => "hash/listpack-ex",
        _ => "unknown/unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_every_family() {
        let redis = |id| encoding_name(id, Magic::Redis);
        assert_eq!(redis(types::STRING), "string/raw");
        assert_eq!(redis(types::LIST_QUICKLIST), "list/quicklist");
        assert_eq!(redis(types::LIST_QUICKLIST_2), "list/quicklist-listpack");
        assert_eq!(redis(types::HASH_LISTPACK), "hash/listpack");
        assert_eq!(redis(types::SET_INTSET), "set/intset");
        assert_eq!(redis(types::ZSET_2), "zset/skiplist");
        assert_eq!(redis(types::STREAM_LISTPACKS_3), "stream/listpacks");
        assert_eq!(redis(types::HASH_LISTPACK_EX), "hash/listpack-ex");
        assert_eq!(redis(types::MODULE_2), "module/module");
        assert_eq!(redis(200), "unknown/unknown");
    }

    #[test]
    fn an_id_the_families_share_is_named_by_the_magic() {
        // 22: Redis 7.4 release candidates' hash with field expiries, and
        // Valkey 9's; both are hash tables with expiries.
        assert_eq!(
            encoding_name(types::HASH_METADATA_PRE_GA, Magic::Redis),
            "hash/hashtable-ex"
        );
        assert_eq!(
            encoding_name(types::VALKEY_HASH_2, Magic::Valkey),
            "hash/hashtable-ex"
        );
        // A Valkey dump names the ids it shares with Redis as Redis does.
        assert_eq!(
            encoding_name(types::HASH_LISTPACK, Magic::Valkey),
            "hash/listpack"
        );
    }
}
