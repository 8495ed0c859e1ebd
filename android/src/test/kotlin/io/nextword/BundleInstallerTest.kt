package io.nextword

import java.io.File
import java.io.IOException
import java.nio.file.Files
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertThrows
import org.junit.Test

class BundleInstallerTest {
    private val source = NextWordTest.bundleDir

    private fun openSource(name: String) = File(source, name).inputStream()

    @Test
    fun copiesTheBundleAndItOpens() {
        val root = Files.createTempDirectory("nextword-install").toFile()
        try {
            val target = BundleInstaller.install(File(root, "en"), this::openSource)
            val manifest = File(source, "manifest.json").readBytes()
            for (name in BundleInstaller.filesOf(manifest) + BundleInstaller.SIGNATURE) {
                assertArrayEquals(name, File(source, name).readBytes(), File(target, name).readBytes())
            }
            assertFalse(File(root, "en.partial").exists())
            NextWord.open(target).use { assertEquals("en", it.info.language) }
        } finally {
            root.deleteRecursively()
        }
    }

    @Test
    fun anInstalledBundleWithTheSameManifestIsNotCopiedAgain() {
        val root = Files.createTempDirectory("nextword-install").toFile()
        try {
            val target = BundleInstaller.install(File(root, "en"), this::openSource)
            val opened = mutableListOf<String>()
            BundleInstaller.install(target) { name -> opened += name; openSource(name) }
            assertEquals(listOf("manifest.json"), opened)
        } finally {
            root.deleteRecursively()
        }
    }

    @Test
    fun aFailedCopyLeavesThePreviousBundleInPlace() {
        val root = Files.createTempDirectory("nextword-install").toFile()
        try {
            val target = BundleInstaller.install(File(root, "en"), this::openSource)
            assertThrows(IOException::class.java) {
                BundleInstaller.install(target) { name ->
                    when (name) {
                        "manifest.json" -> "{\"changed\": true}".byteInputStream()
                        else -> throw IOException("asset $name missing")
                    }
                }
            }
            assertArrayEquals(File(source, "manifest.json").readBytes(), File(target, "manifest.json").readBytes())
            NextWord.open(target).use { assertEquals("en", it.info.language) }
        } finally {
            root.deleteRecursively()
        }
    }
}
