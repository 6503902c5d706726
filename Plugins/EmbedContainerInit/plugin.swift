import Foundation
import PackagePlugin

/// Builds imgboot-init (Sources/ContainerInit/init.c) — a freestanding static program of a
/// couple of kilobytes — and embeds it in the target as a byte array, so that imgboot is one
/// file and the init exists nowhere on the host's filesystems (it runs from a sealed memfd).
@main
struct EmbedContainerInit: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let package = context.package.directoryURL
        let source = package.appending(path: "Sources/ContainerInit/init.c")
        let script = package.appending(path: "Plugins/EmbedContainerInit/embed.sh")
        let output = context.pluginWorkDirectoryURL.appending(path: "ContainerInitExecutable.swift")
        return [
            .buildCommand(
                displayName: "Building imgboot-init and embedding it",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: [script.path, source.path, output.path],
                inputFiles: [source, script],
                outputFiles: [output])
        ]
    }
}
