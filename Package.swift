// swift-tools-version: 6.1
//
// imgboot: dissect, mount and boot raw disk images. The pipeline's stages are library
// targets; an arrow only points down the pipeline (Mount may use Dissect, never the reverse).

import PackageDescription

let package = Package(
    name: "imgboot",
    products: [
        .executable(name: "imgboot", targets: ["imgboot"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // SHA-256 for `ls --mtree` (BoringSSL, linked statically: no library to load at start-up).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Smoke's child processes: spawning them, streaming their output, waiting for them.
        // Without its default trait (SubprocessFoundation): smoke needs no Foundation types.
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2", traits: []),
        // FilePath, as swift-subprocess names an executable.
        .package(url: "https://github.com/apple/swift-system", from: "1.5.0"),
    ],
    targets: [
        // C libraries and the syscalls Swift cannot reach.
        .systemLibrary(name: "CBlkid", pkgConfig: "blkid", providers: [.apt(["libblkid-dev"])]),
        .systemLibrary(name: "CMount", pkgConfig: "mount", providers: [.apt(["libmount-dev"])]),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .target(name: "CLinux"),

        // What every stage uses: the error shape, file I/O, clocks, text for a terminal, JSON,
        // tables, owned descriptors. Nothing of the pipeline.
        .target(name: "Support"),

        // The pipeline.
        .target(
            name: "Dissect",
            dependencies: [
                "Support", "CBlkid", "CLinux",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .target(
            name: "Attach",
            dependencies: [
                "Support", "Dissect", "CLinux",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Mount",
            dependencies: [
                "Support", "Dissect", "Attach", "CMount", "CLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "Boot",
            dependencies: [
                "Support", "Dissect", "Attach", "Mount", "CLinux", "CSeccomp",
                .product(name: "Logging", package: "swift-log"),
            ],
            plugins: ["EmbedContainerInit"]
        ),
        // imgboot-init (Sources/ContainerInit/init.c, freestanding C): built and embedded in Boot.
        .plugin(name: "EmbedContainerInit", capability: .buildTool()),

        // Smoke drives imgboot's own commands as child processes; it looks into no image itself.
        .target(
            name: "Smoke",
            dependencies: [
                "Support", "Dissect", "Boot", "CLinux",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),

        // The command-line tool: thin, one file per subcommand.
        .executableTarget(
            name: "imgboot",
            dependencies: [
                "Support", "Dissect", "Attach", "Mount", "Boot", "Smoke", "CLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(name: "DissectTests", dependencies: ["Support", "Dissect"]),
        .testTarget(
            name: "AttachTests",
            dependencies: ["Support", "Attach", "Dissect", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "MountTests", dependencies: ["Support", "Mount"]),
        // Boot's pure parts, without root: the container's plan and operations, option parsing,
        // exit statuses, the device table, the system call filter.
        .testTarget(name: "BootUnitTests", dependencies: ["Support", "Boot", "Mount", "Dissect"]),
        .testTarget(name: "imgbootTests", dependencies: ["Support", "Dissect"]),
    ],
    swiftLanguageModes: [.v6]
)
