import ArgumentParser
import Boot
import Mount

#if canImport(Glibc)
import Glibc
#endif

extension IMGBoot {
    /// IMAGE: disk images by their usual names, and the directories on the way to them. Any other
    /// file (a block device, an image named otherwise) is still typed in full: the shells offer
    /// every file once no name matches (see `tools/install`).
    static let imageCompletion = CompletionKind.file(extensions: ["raw", "img"])

    /// NAME of `enter` and `stop`: the running machines' names, as far as this user may read
    /// them. Run by the shell at each TAB, so it prints nothing but names: without root the
    /// store cannot be read, and nothing is offered.
    static let machineCompletion = CompletionKind.custom { _, _, prefix in
        runningMachineNames().filter { $0.hasPrefix(prefix) }
    }
}

/// The names in imgboot's machine registry (`/run/imgboot/machines`), without locking or
/// checking them (a machine that has just ended may still be named): what `list` would show,
/// cheaply, and only names that are valid machine names.
func runningMachineNames() -> [String] {
    guard let dir = opendir(StateStore.machines) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if !name.hasPrefix("."), ContainerSpec.isValidMachineName(name) { names.append(name) }
    }
    return names.sorted()
}
