import Testing
@testable import Dissect

struct VersionCompareTests {
    /// Each pair: the first is older than the second.
    @Test(arguments: [
        ("fooOS_1.9", "fooOS_1.10"),
        ("fooOS_1.10", "fooOS_2.0"),
        ("1.0", "1.0.1"),
        ("1.0~rc1", "1.0"),
        ("1.0~rc1", "1.0~rc2"),
        ("1.0", "1.0-1"),
        ("1.0.1", "1.0a"),
        ("123", "123.a"),
        ("123.a", "123a"),
        ("123.a", "123.b"),
        ("bar-123", "foo-123"),
        ("A", "a"),
        ("1_", "1.2"),
        ("1.3.3", "1_2_3"),
        ("0", "0."),
        ("a", "b"),
        ("2021.4", "2022.1"),
        ("1.01", "1.2"),
        ("", "1"),
        ("1.0.1", "1.0^"),
        ("", "~1"),
    ])
    func ordered(older: String, newer: String) {
        #expect(compareVersions(older, newer) < 0)
        #expect(compareVersions(newer, older) > 0)
    }

    @Test(arguments: [("1.0", "1.0"), ("fooOS_1.001", "fooOS_1.1"), ("", ""), ("a_1", "a+1"), ("11", "11"), ("1_", "1"), ("_1", "1"), ("1+", "1")])
    func equal(a: String, b: String) {
        #expect(compareVersions(a, b) == 0)
    }
}
